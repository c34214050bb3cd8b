/**
 * The outcome journal: an append-only file on local disk in which this node writes every job's result
 * BEFORE it sends it to the edge, so a process killed between an SMTP server's 250 and the hub's
 * resultAck does not deliver the message again after its restart (docs/architecture.md, invariant 13;
 * docs/operations.md#the-outcome-journal).
 *
 * What it holds, and when:
 *  - `append(frame, shard)`: one line per result frame (every recipient's outcome, deferred ones too,
 *    so a replay is an ordinary result), written with write(2) before the frame goes to the link. Once
 *    write() returned, a crash of the process (kill -9) loses nothing: the bytes are in the kernel's
 *    page cache. fdatasync runs every `fsyncIntervalMs` when something was written, so a power loss
 *    loses at most that interval (0 = fdatasync after every append).
 *  - `appendEarly(frame, shard)`: the final outcomes a job still running already has (an SMTP
 *    server's 250 or 5xx, written the moment its reply is parsed, before the host-slot release and
 *    the job's other domains). Same guarantee once write() returned; it answers `finalOutcomes` (so a
 *    re-dispatch after a kill delivers only the rest) but is never reported as a result: a result
 *    frame without every recipient of its dispatch would end the missing ones at the hub. The job's
 *    result (`append`) replaces it; an inherited one goes like an inherited result (below).
 *  - `acknowledged(jobIds)` (the hub's resultAck): the entry is done. Done entries of this boot are
 *    dropped with a mark line; so are older entries of the same message (the hub sends a message again
 *    only with the recipients still to try, so a later dispatch supersedes them).
 *  - Entries read at start, written by an earlier process of this NODE_ID (`inherited`), are reported
 *    again by node.ts on each shard's link BEFORE its hello: the hub applies a result to the dispatch it
 *    names while that row is still leased, and only the hello retires the previous process's leases
 *    (docs/link-protocol.md#restarts-and-boot-ids). A resultAck cannot tell "recorded" from "no use"
 *    (the row had moved on), so an inherited entry is not dropped by it: it stays, as the answer to a
 *    later dispatch of its message (`finalOutcomes`), until a result of this boot for that message is
 *    acknowledged, or for `retainMs` (JOB_RESULT_TTL_S).
 *
 * On disk: `<dir>/<NODE_ID, URI-encoded>/` holds `seg-<n>.jsonl` segments and a `lock` naming the live
 * process (two live processes with one NODE_ID on one host are refused: docs/link-protocol.md). Lines:
 * `{"r":<result frame>,"s":<shard>,"at":<ms>}` (with `"p":1` for an early entry) and `{"a":[<job ids done>]}`. The last line of a
 * segment may be torn by a crash (write() cut short, or a power loss within the fsync interval): a
 * line that does not parse is skipped and counted, never fatal.
 *
 * Compaction: at start every surviving entry is written into a new segment, which is fsynced before the
 * old ones are removed, so appends never follow a torn line; at run time the same happens whenever the
 * active segment passes `segmentBytes`. The live entries are bounded by the results waiting for
 * resultAck (LINK_MAX_UNACKED_RESULTS per link), so a new segment starts small.
 */
import fs from "node:fs";
import path from "node:path";
import { OriginFrameSchema, type OriginFrame, type RecipientOutcome } from "../../../shared/link/protocol.ts";

export type ResultFrame = Extract<OriginFrame, { type: "result" }>;

export interface OutcomeJournalOptions {
  /** JOURNAL_DIR: the node's own directory is created inside it. */
  dir: string;
  nodeId: string;
  /** fdatasync at most this often while appending (JOURNAL_FSYNC_MS); 0 = after every append. */
  fsyncIntervalMs: number;
  /** Start a new (compacted) segment once the active one is this large (JOURNAL_SEGMENT_BYTES). */
  segmentBytes?: number;
  /** Inherited entries older than this are dropped (JOB_RESULT_TTL_S). */
  retainMs: number;
  log?: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  now?: () => number;
}

interface Entry {
  frame: ResultFrame;
  shard: number;
  at: number;
  /** Written by an earlier process of this node (see the header). */
  inherited: boolean;
  /** An `appendEarly` entry: final outcomes of a job still running, never reported as a result. */
  early?: boolean;
}

/** What opening found on disk. */
export interface JournalRecovery {
  /** Results carried over from earlier processes (not done), to report. */
  inherited: number;
  /** Early entries carried over (outcomes of jobs a killed process had not finished). */
  early: number;
  /** Lines that did not parse (a torn last line after a crash, typically one). */
  skippedLines: number;
  /** Segments read. */
  segments: number;
}

const FINAL = new Set<RecipientOutcome["status"]>(["delivered", "bounced", "failed"]);
const SEGMENT = /^seg-(\d{10})\.jsonl$/;
const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;

/** The node's directory name: NODE_ID may hold any character; "." and ".." must not climb out. */
export function nodeDirName(nodeId: string): string {
  return encodeURIComponent(nodeId).replace(/\./g, "%2E");
}

export class OutcomeJournal {
  /** By job id, in append order (Map keeps insertion order: replay order is append order). */
  private readonly entries = new Map<string, Entry>();
  /** Job ids of each message's entries. */
  private readonly byMessage = new Map<string, Set<string>>();
  private fd = -1;
  private seq = 0;
  private activeBytes = 0;
  private dirty = false;
  private syncing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  readonly nodeDir: string;
  readonly recovery: JournalRecovery;
  private readonly segmentBytes: number;
  private readonly now: () => number;

  private constructor(private readonly opts: OutcomeJournalOptions) {
    this.nodeDir = path.join(opts.dir, nodeDirName(opts.nodeId));
    this.segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.now = opts.now ?? Date.now;
    try {
      fs.mkdirSync(this.nodeDir, { recursive: true });
      fs.accessSync(this.nodeDir, fs.constants.W_OK);
    } catch (err) {
      throw new Error(
        `outcome journal: cannot write ${this.nodeDir} (${(err as Error).message}); set JOURNAL_DIR to a directory on local disk the node's user owns (docs/operations.md#the-outcome-journal)`,
      );
    }
    this.lock();
    this.recovery = this.load();
    this.rotate();
    if (opts.fsyncIntervalMs > 0) {
      this.timer = setInterval(() => void this.sync(), opts.fsyncIntervalMs);
      this.timer.unref();
    }
  }

  /** Opens (or creates) the node's journal, reads what earlier processes left and compacts it. Synchronous. */
  static open(opts: OutcomeJournalOptions): OutcomeJournal {
    return new OutcomeJournal(opts);
  }

  /** Entries not done, in total. */
  get size(): number {
    return this.entries.size;
  }

  /** Result frames earlier processes wrote and never saw done, for one shard's link, in append order. */
  inheritedFor(shard: number): ResultFrame[] {
    const out: ResultFrame[] = [];
    for (const e of this.entries.values())
      if (e.inherited && !e.early && e.shard === shard) out.push(e.frame);
    return out;
  }

  /** Shards that have inherited entries (a link to each must report them). */
  inheritedShards(): number[] {
    const s = new Set<number>();
    for (const e of this.entries.values()) if (e.inherited && !e.early) s.add(e.shard);
    return [...s].sort((a, b) => a - b);
  }

  /**
   * The final (delivered / bounced / failed) outcomes journaled for a message, by recipient; with
   * `fromAttempt`, only those of dispatches from it on (a retried message: docs/link-protocol.md#retried-messages).
   */
  finalOutcomes(messageId: string, fromAttempt = 0): Map<string, RecipientOutcome> {
    const known = new Map<string, RecipientOutcome>();
    for (const id of this.byMessage.get(messageId) ?? []) {
      const e = this.entries.get(id);
      if (!e || e.frame.attempt < fromAttempt) continue;
      for (const o of e.frame.recipients) if (FINAL.has(o.status)) known.set(o.recipient, o);
    }
    return known;
  }

  /** Writes a result before it is sent (synchronously: once this returns, a crash cannot lose it). */
  append(frame: ResultFrame, shard: number): void {
    if (this.closed) throw new Error("outcome journal is closed");
    const entry: Entry = { frame, shard, at: this.now(), inherited: false };
    this.write(`${JSON.stringify({ r: frame, s: shard, at: entry.at })}\n`);
    this.add(entry);
    if (this.opts.fsyncIntervalMs === 0) fs.fdatasyncSync(this.fd);
    if (this.activeBytes >= this.segmentBytes) this.rotate();
  }

  /**
   * Writes the final outcomes a running job already has (see the header), synchronously like
   * `append`. `frame.recipients` holds only those; the job's `append` later replaces the entry.
   */
  appendEarly(frame: ResultFrame, shard: number): void {
    if (this.closed) throw new Error("outcome journal is closed");
    const entry: Entry = { frame, shard, at: this.now(), inherited: false, early: true };
    this.write(`${JSON.stringify({ r: frame, s: shard, at: entry.at, p: 1 })}\n`);
    this.add(entry);
    if (this.opts.fsyncIntervalMs === 0) fs.fdatasyncSync(this.fd);
    if (this.activeBytes >= this.segmentBytes) this.rotate();
  }

  /** The hub acknowledged these results (see the header for what becomes done). */
  acknowledged(jobIds: string[]): void {
    if (this.closed) return;
    const done: string[] = [];
    for (const id of jobIds) {
      const e = this.entries.get(id);
      if (!e || e.inherited || e.early) continue;
      // This boot's result for this dispatch is recorded (or superseded): every entry of the message
      // up to this dispatch has served its purpose.
      for (const other of [...(this.byMessage.get(e.frame.messageId) ?? [])]) {
        const o = this.entries.get(other);
        if (o && o.frame.attempt <= e.frame.attempt) {
          this.remove(other);
          done.push(other);
        }
      }
    }
    if (done.length > 0) this.write(`${JSON.stringify({ a: done })}\n`);
  }

  /** fdatasync what was written since the last one. Never rejects. */
  sync(): Promise<void> {
    if (this.syncing) return this.syncing;
    if (!this.dirty || this.fd < 0) return Promise.resolve();
    this.dirty = false;
    const fd = this.fd;
    this.syncing = new Promise<void>((resolve) => {
      fs.fdatasync(fd, (err) => {
        this.syncing = null;
        if (err) {
          this.dirty = true;
          this.opts.log?.("error", "outcome journal fdatasync failed", { error: err.message });
        }
        resolve();
      });
    });
    return this.syncing;
  }

  /**
   * Syncs and closes. With nothing left to report the segment, the lock and the node's directory are
   * removed, so a node that drained cleanly leaves nothing behind.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.syncing;
    if (this.fd >= 0) {
      fs.fdatasyncSync(this.fd);
      fs.closeSync(this.fd);
      this.fd = -1;
    }
    try {
      if (this.entries.size === 0) {
        for (const name of this.segmentNames()) fs.rmSync(path.join(this.nodeDir, name), { force: true });
      }
      fs.rmSync(path.join(this.nodeDir, "lock"), { force: true });
      // Only if empty: anything else there is not ours to remove.
      if (this.entries.size === 0) fs.rmdirSync(this.nodeDir);
    } catch {
      // Not empty, or already gone: nothing of ours is lost either way.
    }
  }

  // ------------------------------------------------------------------------------------------

  private add(e: Entry): void {
    const id = e.frame.jobId;
    this.entries.delete(id); // a re-append (compaction) moves it to the end
    this.entries.set(id, e);
    let set = this.byMessage.get(e.frame.messageId);
    if (!set) this.byMessage.set(e.frame.messageId, (set = new Set()));
    set.add(id);
  }

  private remove(jobId: string): void {
    const e = this.entries.get(jobId);
    if (!e) return;
    this.entries.delete(jobId);
    const set = this.byMessage.get(e.frame.messageId);
    set?.delete(jobId);
    if (set?.size === 0) this.byMessage.delete(e.frame.messageId);
  }

  private write(line: string): void {
    const buf = Buffer.from(line, "utf8");
    let off = 0;
    while (off < buf.length) off += fs.writeSync(this.fd, buf, off, buf.length - off);
    this.activeBytes += buf.length;
    this.dirty = true;
  }

  /** One process per node directory: a lock naming a live process other than this one is refused. */
  private lock(): void {
    const file = path.join(this.nodeDir, "lock");
    try {
      const held = JSON.parse(fs.readFileSync(file, "utf8")) as { pid?: unknown };
      const pid = typeof held.pid === "number" ? held.pid : 0;
      if (pid > 0 && pid !== process.pid && alive(pid))
        throw new JournalInUseError(this.nodeDir, pid, this.opts.nodeId);
    } catch (err) {
      if (err instanceof JournalInUseError) throw err;
      // No lock, or an unreadable one (torn by a crash): ours now.
    }
    fs.writeFileSync(file, `${JSON.stringify({ pid: process.pid, at: this.now() })}\n`);
  }

  private segmentNames(): string[] {
    return fs
      .readdirSync(this.nodeDir)
      .filter((n) => SEGMENT.test(n))
      .sort();
  }

  /** Reads every segment in order: results add entries, marks remove them; old inherited ones expire. */
  private load(): JournalRecovery {
    const names = this.segmentNames();
    for (const name of names) this.seq = Math.max(this.seq, Number(SEGMENT.exec(name)![1]));
    const { entries, skippedLines } = readJournal(this.opts.dir, this.opts.nodeId);
    for (const e of entries) this.add({ ...e, inherited: true });
    if (skippedLines > 0) {
      this.opts.log?.(
        "warn",
        "outcome journal: skipped lines that do not parse (a write cut short by a crash)",
        {
          lines: skippedLines,
        },
      );
    }
    const oldest = this.now() - this.opts.retainMs;
    let inherited = 0;
    let early = 0;
    for (const e of this.entries.values()) if (e.at >= oldest) e.early ? early++ : inherited++;
    return { inherited, early, skippedLines, segments: names.length };
  }

  /**
   * Starts segment n+1 holding every entry not done, makes it durable, then removes the older ones.
   * The old segments go only after the new one is fsynced, so a crash in between leaves both (read
   * twice, an entry is still one entry).
   */
  private rotate(): void {
    const oldest = this.now() - this.opts.retainMs;
    for (const [id, e] of this.entries) if (e.inherited && e.at < oldest) this.remove(id);
    const old = this.segmentNames();
    const prevFd = this.fd;
    this.seq++;
    const name = `seg-${String(this.seq).padStart(10, "0")}.jsonl`;
    this.fd = fs.openSync(path.join(this.nodeDir, name), "a");
    this.activeBytes = 0;
    for (const e of this.entries.values()) {
      this.write(`${JSON.stringify({ r: e.frame, s: e.shard, at: e.at, ...(e.early ? { p: 1 } : {}) })}\n`);
    }
    fs.fdatasyncSync(this.fd);
    this.dirty = false;
    fsyncDir(this.nodeDir);
    if (prevFd >= 0) {
      // An fdatasync of the old segment may still be running on the thread pool: close after it.
      const pending = this.syncing;
      if (pending) void pending.then(() => fs.closeSync(prevFd));
      else fs.closeSync(prevFd);
    }
    for (const n of old) fs.rmSync(path.join(this.nodeDir, n), { force: true });
  }
}

/**
 * Reads a node's journal without taking it over (no lock, no compaction): the entries not done, in
 * append order, as a process opening it now would inherit them (`early` for an `appendEarly` entry).
 * For operators and tests (what did a killed process know?).
 */
export function readJournal(dir: string, nodeId: string): { entries: JournalRecord[]; skippedLines: number } {
  const nodeDir = path.join(dir, nodeDirName(nodeId));
  const entries = new Map<string, JournalRecord>();
  let skippedLines = 0;
  const names = fs.existsSync(nodeDir)
    ? fs
        .readdirSync(nodeDir)
        .filter((n) => SEGMENT.test(n))
        .sort()
    : [];
  for (const name of names) {
    for (const line of fs.readFileSync(path.join(nodeDir, name), "utf8").split("\n")) {
      if (line === "") continue;
      const rec = parseLine(line);
      if (rec === null) skippedLines++;
      else if ("a" in rec) for (const id of rec.a) entries.delete(id);
      else {
        entries.delete(rec.r.jobId);
        entries.set(rec.r.jobId, {
          frame: rec.r,
          shard: rec.s,
          at: rec.at,
          ...(rec.p ? { early: true } : {}),
        });
      }
    }
  }
  return { entries: [...entries.values()], skippedLines };
}

/** Another live process holds this node's journal: two processes share one NODE_ID. */
export class JournalInUseError extends Error {
  constructor(dir: string, pid: number, nodeId: string) {
    super(
      `outcome journal ${dir} is in use by process ${pid}: NODE_ID "${nodeId}" must be unique per process (docs/operations.md#the-outcome-journal)`,
    );
    this.name = "JournalInUseError";
  }
}

/** One entry not done, as read from disk. */
export interface JournalRecord {
  frame: ResultFrame;
  shard: number;
  at: number;
  /** Written by `appendEarly`. */
  early?: boolean;
}

type Line = { r: ResultFrame; s: number; at: number; p?: true } | { a: string[] };

function parseLine(line: string): Line | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const o = v as Record<string, unknown>;
  if (Array.isArray(o.a)) return o.a.every((x) => typeof x === "string") ? { a: o.a as string[] } : null;
  const frame = OriginFrameSchema.safeParse(o.r);
  if (!frame.success || frame.data.type !== "result") return null;
  if (!Number.isInteger(o.s) || !Number.isFinite(o.at)) return null;
  return { r: frame.data, s: o.s as number, at: o.at as number, ...(o.p === 1 ? { p: true as const } : {}) };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Makes a rename/create/unlink in `dir` durable (POSIX: fsync the directory). */
function fsyncDir(dir: string): void {
  let fd = -1;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the entries are in the segment either way.
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}
