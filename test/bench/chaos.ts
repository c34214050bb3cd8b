/**
 * Chaos: `kill -9` of a delivering origin process in the middle of a run, and (second scenario) of
 * the Redis the origin coordinates through. Everything is real and on loopback: the bundled Worker in
 * workerd (Miniflare), a DNS server whose MX points at 127.0.0.1, a slow SMTP sink that answers each
 * DATA `dataDelayMs` late (so the origin holds ~CAPACITY jobs while a few SMTP sessions wait for their
 * 250), the origin as its own process (`node --import tsx origin/src/main.ts`, ONE process, so the pid
 * we kill is the one delivering) and `redis-server`.
 *
 * A run: N messages accepted by POST /v3/mail/send; when the sink has `killAtFraction` of them, the
 * origin gets SIGKILL and is started again at once with the SAME NODE_ID. The edge recognises the
 * restart by the new boot id and re-dispatches the killed process's jobs without waiting out their
 * lease; with Redis the successor takes over the killed process's claims (docs/link-protocol.md,
 * docs/operations.md). With Redis, Redis itself is then killed with SIGKILL and started again on the
 * same port. The run ends when every accepted message is terminal in D1, bounded by `timeoutMs`.
 *
 * Measured and returned (the callers assert; see `chaosProblems`): accepted / delivered / lost (a
 * delivered message the sink never saw), duplicates (messages the sink accepted more than once), and
 * the drain time from the restart to the last terminal message. The origin keeps an outcome journal
 * (JOURNAL_DIR, origin/src/journal/outcome-journal.ts); right after the kill, before the restart,
 * the run reads what the killed process had journaled and not seen acknowledged, which is exactly
 * what it knew: a duplicate among THOSE messages is a failure. What remains possible is a 250 the
 * sink sent that the killed process never read or journaled (RFC 1047's window), so every duplicate
 * is also classed by the sink's timestamp of its first 250 against the kill. Used by test/e2e/chaos.e2e.test.ts (`npm test`,
 * small N) and by `npm run bench` (`--only=chaos`, N = 1,000).
 *
 * Every process started here is stopped by its pid, also on failure; `onCleanup` lets the benchmark
 * runner stop them on Ctrl-C too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { readJournal } from "../../origin/src/journal/outcome-journal.ts";
import { AdminClient } from "../../scripts/lib/admin-client.ts";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { freePort, REPO_ROOT, stopGroup } from "../../scripts/lib/wrangler-dev.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.ts";
import { startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

/** The edge's default lease (docs/configuration.md, LINK_LEASE_MS), set explicitly so the bound below is about it. */
export const CHAOS_LEASE_MS = 300_000;
const SENDER_DOMAIN = "chaos.test";
const RECIPIENT_DOMAIN = "inbox.chaos.test";
const MX_HOST = "mx.chaos.test";
const TERMINAL = new Set(["delivered", "bounced", "failed", "cancelled"]);

type Cleanup = (name: string, fn: () => Promise<void>) => () => Promise<void>;
/** Without a runner's registry: a cleanup that runs when asked, once. */
const localCleanup: Cleanup = (_name, fn) => {
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    await fn();
  };
};

export interface ChaosStack {
  edge: MiniflareEdge;
  dns: TestDnsServer;
  admin: AdminClient;
  originToken: string;
  workDir: string;
  onCleanup: Cleanup;
  stop(): Promise<void>;
}

/** The edge (Miniflare) and the DNS server, shared by the scenarios of one run. `workDir` must be inside the repository (the bundle's paths are relative to it). */
export async function startChaosStack(
  workDir: string,
  onCleanup: Cleanup = localCleanup,
): Promise<ChaosStack> {
  fs.mkdirSync(workDir, { recursive: true });
  const secrets = {
    ORIGIN_TOKEN: randomBytes(24).toString("hex"),
    ADMIN_TOKEN: randomBytes(24).toString("hex"),
    SECRETS_KEY: randomBytes(32).toString("base64"),
    TRACKING_SECRET: randomBytes(24).toString("hex"),
  };
  const dns = await startDnsServer({
    records: {
      [MX_HOST]: { A: ["127.0.0.1"] },
      [RECIPIENT_DOMAIN]: { MX: [{ preference: 10, exchange: MX_HOST }] },
    },
  });
  const stopDns = onCleanup("chaos dns", () => dns.close());
  let edge: MiniflareEdge;
  try {
    edge = await startMiniflareEdge({
      persistDir: path.join(workDir, "edge"),
      vars: {
        ...secrets,
        // The sender domain counts as verified without DNS; this is about delivery.
        DEV_MODE: "true",
        DNS_RESOLVER_URL: dns.dohUrl,
        LINK_LEASE_MS: String(CHAOS_LEASE_MS),
        // A job deferred while Redis is down comes back within a second, not after the production
        // schedule's first minute; 60 steps so no message runs out of retries during the outage.
        RETRY_SCHEDULE: "1s*60",
      },
    });
  } catch (err) {
    await stopDns();
    throw err;
  }
  const stopEdge = onCleanup("chaos edge", () => edge.stop());
  return {
    edge,
    dns,
    admin: new AdminClient(edge.url, secrets.ADMIN_TOKEN),
    originToken: secrets.ORIGIN_TOKEN,
    workDir,
    onCleanup,
    async stop() {
      await stopEdge();
      await stopDns();
    },
  };
}

interface OriginProc {
  pid: number;
  httpPort: number;
  child: ChildProcess;
  exited: Promise<void>;
  /** SIGTERM to its process group (it drains), SIGKILL after 15 s; also when it was never ready. */
  stop(): Promise<void>;
}

async function startOrigin(
  stack: ChaosStack,
  o: {
    nodeId: string;
    smtpPort: number;
    logFile: string;
    journalDir: string;
    redisUrl?: string;
    hostSlotTtlMs?: number;
  },
): Promise<OriginProc> {
  const httpPort = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Nothing from the caller's environment may change the origin under test: defaults, except below.
  for (const k of Object.keys(env)) {
    if (
      /^(REDIS_URL|SMARTHOST|DEV_INBOX|CAPACITY|MAX_CONNECTIONS_PER_HOST|LOG_LEVEL|JOB_|HOST_SLOT_|JOURNAL_)/.test(
        k,
      ) ||
      k === "NODE_OPTIONS"
    )
      delete env[k];
  }
  Object.assign(env, {
    EDGE_URL: stack.edge.url,
    ORIGIN_TOKEN: stack.originToken,
    VERP_SECRET: "chaos-verp-secret-0123456789abcdef0123456789",
    // The same node id across the restart: that is how the edge knows the new process replaces the old.
    NODE_ID: o.nodeId,
    HELO_NAME: "origin.chaos.test",
    DNS_SERVERS: stack.dns.server,
    // The test zone's MX host is 127.0.0.1.
    ALLOW_PRIVATE_MX: "true",
    SMTP_PORT: String(o.smtpPort),
    HTTP_HOST: "127.0.0.1",
    HTTP_PORT: String(httpPort),
    DRAIN_TIMEOUT_MS: "10000",
    // The restarted process reads the killed one's journal here (same NODE_ID, same directory).
    JOURNAL_DIR: o.journalDir,
    LOG_LEVEL: "info",
    ...(o.redisUrl ? { REDIS_URL: o.redisUrl } : {}),
    ...(o.hostSlotTtlMs ? { HOST_SLOT_TTL_MS: String(o.hostSlotTtlMs) } : {}),
  });
  const out = fs.openSync(o.logFile, "a");
  const child = spawn(
    path.join(REPO_ROOT, "node_modules", ".bin", "node"),
    ["--import", "tsx", "origin/src/main.ts"],
    {
      cwd: REPO_ROOT,
      env,
      stdio: ["ignore", out, out],
      // Its own process group, so a cleanup also ends anything it started.
      detached: true,
    },
  );
  fs.closeSync(out);
  if (child.pid === undefined) throw new Error("could not start the origin");
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stopNow = stack.onCleanup(`chaos origin ${child.pid}`, () => stopGroup(child, 15_000));
  void exited.then(() => stopNow());
  const proc: OriginProc = { pid: child.pid, httpPort, child, exited, stop: stopNow };
  return proc;
}

async function waitReady(proc: OriginProc, logFile: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null)
      throw new Error(
        `the origin exited (${proc.child.exitCode ?? proc.child.signalCode}):\n${tail(logFile)}`,
      );
    try {
      if ((await fetch(`http://127.0.0.1:${proc.httpPort}/readyz`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until)
      throw new Error(`the origin was not ready within ${timeoutMs} ms:\n${tail(logFile)}`);
    await sleep(50);
  }
}

const tail = (file: string) => {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
  } catch {
    return "";
  }
};
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function inFlight(proc: OriginProc): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proc.httpPort}/metrics`)).text();
  const m = /^scaisend_origin_jobs_in_flight (\d+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

/**
 * SIGKILL by pid (no chance to drain, report or release anything) and wait until it is gone. Returns
 * when the signal was sent: a 250 the sink sends after that cannot have been read by the process.
 */
async function kill9(proc: OriginProc): Promise<number> {
  const at = Date.now();
  process.kill(proc.pid, "SIGKILL");
  await proc.exited;
  return at;
}

export interface ChaosOptions {
  /** Messages accepted (N). */
  messages: number;
  /** Coordinate through Redis (REDIS_URL) and kill Redis too. */
  redis: boolean;
  /** The sink answers each DATA this late. */
  dataDelayMs?: number;
  /** The origin is killed once the sink has accepted this fraction of N. */
  killAtFraction?: number;
  /** With Redis: Redis is killed once the sink has accepted this fraction of N. */
  redisKillAtFraction?: number;
  /** Bound on the whole wait for every message to be terminal. */
  timeoutMs?: number;
  /**
   * HOST_SLOT_TTL_MS for the origin (default: its own, 60 s). With Redis the successor frees the
   * killed process's host slots at once (a later boot of the same node), as it takes over its claims.
   */
  hostSlotTtlMs?: number;
  /**
   * false: the restarted process gets another NODE_ID, so the edge cannot tell it replaces the killed
   * one and the killed process's jobs wait out their lease (what the boot-id re-dispatch saves; the
   * checks then fail, which shows they can).
   */
  sameNodeIdOnRestart?: boolean;
  /**
   * false: the restarted process gets an empty JOURNAL_DIR, as if the killed one's outcome journal
   * had been lost, so what it knew is delivered again (the journal check then fails, which shows it can).
   */
  keepJournalOnRestart?: boolean;
  log?: (msg: string) => void;
}

export interface ChaosResult {
  scenario: string;
  redis: boolean;
  accepted: number;
  delivered: number;
  /** Accepted messages that are not terminal at the end (ids, at most 10 shown in problems). */
  notTerminal: string[];
  /** Terminal states other than delivered, by status. */
  otherTerminal: Record<string, number>;
  /** Delivered messages the sink never accepted. */
  lost: string[];
  /** Messages at the sink that were never accepted by this run. */
  unknownAtSink: number;
  /** Copies the sink accepted in all. */
  sinkAccepted: number;
  /** Messages the sink accepted more than once, and the extra copies. */
  duplicates: number;
  duplicateCopies: number;
  /** Of those, the ones whose first 250 the sink sent before the origin was killed. */
  duplicatesAnsweredBeforeKill: number;
  /**
   * Of those, the ones the killed process had journaled as delivered (it knew the 250): must be 0.
   * The others' 250 was in flight or unread when the process died.
   */
  duplicatesJournaled: number;
  /** Results the killed process had journaled and not seen acknowledged (reported by its successor before its hello). */
  journaledAtKill: number;
  /** Of those, messages with a delivered recipient. */
  journaledDeliveredAtKill: number;
  /** Per duplicated message (at most 20): when the sink sent each 250, in ms from the kill (negative = before). */
  duplicateTimesFromKillMs: number[][];
  /** The origin's scaisend_origin_jobs_in_flight just before the kill. */
  inFlightAtKill: number;
  /** SMTP sessions waiting for the sink's delayed 250 at the kill. */
  sessionsAtDataAtKill: number;
  /** Messages the sink had accepted when the origin was killed. */
  sinkAcceptedAtKill: number;
  /** Delayed DATA the sink dropped because the client was gone (no 250 was sent: not delivered). */
  abandonedAtSink: number;
  /** With Redis: messages the sink had accepted when Redis was killed, and how long it was away. */
  sinkAcceptedAtRedisKill?: number;
  redisDownMs?: number;
  /** From the restart (spawn) to the new process's /readyz 200. */
  restartToReadyS: number;
  /** From the restart (spawn) to the first 250 the sink sent after it: when delivery resumed. */
  resumedS: number;
  /** From the restart (spawn) to the moment every accepted message was terminal. */
  drainS: number;
  /** From the first POST to every message terminal. */
  runS: number;
  leaseMs: number;
  dataDelayMs: number;
  /** HOST_SLOT_TTL_MS given to the origin; null = its default (60 s). */
  hostSlotTtlMs: number | null;
  /** From the first POST to the origin kill. */
  killAtS: number;
  /** The messages that were re-dispatched at least once (dispatches > 1 in D1). */
  redispatched: number;
}

export async function runChaos(stack: ChaosStack, o: ChaosOptions): Promise<ChaosResult> {
  const n = o.messages;
  const dataDelayMs = o.dataDelayMs ?? 250;
  const log = o.log ?? (() => {});
  const scenario = o.redis ? "origin kill -9, then Redis kill -9" : "origin kill -9";
  const tag = `${o.redis ? "redis" : "solo"}-${randomBytes(2).toString("hex")}`;
  const nodeId = `chaos-${tag}`;
  const logFile = path.join(stack.workDir, `origin-${tag}.log`);
  const journalDir = path.join(stack.workDir, `journal-${tag}`);

  const tenant = await stack.admin.createTenant(`Chaos ${tag}`);
  const key = (
    await stack.admin.createApiKey(tenant.id, { name: "chaos", environment: "live", scopes: ["mail.send"] })
  ).api_key;
  const domain = await stack.admin.createDomain(tenant.id, SENDER_DOMAIN);
  if (!domain.verified) throw new Error(`${SENDER_DOMAIN} is not verified although DEV_MODE=true`);

  const sink: TestSmtpServer = await startSmtpServer({ dataDelayMs });
  const stopSink = stack.onCleanup("chaos sink", () => sink.close());
  let redis: TestRedisServer | null = null;
  const stopRedis = stack.onCleanup("chaos redis", async () => {
    await redis?.stop();
  });
  const origins: OriginProc[] = [];
  try {
    if (o.redis) redis = await startRedisServer();
    const start = async (id = nodeId, journal = journalDir) => {
      const p = await startOrigin(stack, {
        nodeId: id,
        smtpPort: sink.port,
        logFile,
        journalDir: journal,
        ...(redis ? { redisUrl: redis.url } : {}),
        ...(o.hostSlotTtlMs ? { hostSlotTtlMs: o.hostSlotTtlMs } : {}),
      });
      origins.push(p);
      return p;
    };
    const first = await start();
    await waitReady(first, logFile);

    // Accept N messages, 100 personalizations per request (one message each).
    const t0 = Date.now();
    const accepted: string[] = [];
    for (let i = 0; i < n; i += 100) {
      const count = Math.min(100, n - i);
      const res = await fetch(`${stack.edge.url}/v3/mail/send`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({
          personalizations: Array.from({ length: count }, (_, j) => ({
            to: [{ email: `user${i + j}@${RECIPIENT_DOMAIN}` }],
          })),
          from: { email: `app@${SENDER_DOMAIN}` },
          subject: `chaos ${tag}`,
          content: [{ type: "text/plain", value: `chaos run ${tag}` }],
        }),
      });
      const text = await res.text();
      if (res.status !== 202) throw new Error(`POST /v3/mail/send answered ${res.status}: ${text}`);
      const body = JSON.parse(text) as { message_ids?: string[]; message_id?: string };
      accepted.push(...(body.message_ids ?? (body.message_id ? [body.message_id] : [])));
    }
    if (accepted.length !== n) throw new Error(`accepted ${accepted.length} message ids for ${n} messages`);
    log(`${scenario}: ${n} accepted in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const deadline = t0 + (o.timeoutMs ?? 120_000);
    const waitSink = async (count: number, what: string) => {
      while (sink.messages.length < count) {
        if (Date.now() > deadline)
          throw new Error(`${what}: the sink has ${sink.messages.length} of ${count}\n${tail(logFile)}`);
        await sleep(10);
      }
    };

    // Kill the origin in the middle of the run.
    await waitSink(Math.floor(n * (o.killAtFraction ?? 0.3)), "before the origin kill");
    const inFlightAtKill = await inFlight(first);
    const sessionsAtDataAtKill = sink.delaying;
    const sinkAcceptedAtKill = sink.messages.length;
    const killedAt = await kill9(first);
    // What the killed process knew and had not seen acknowledged, read before its successor takes it.
    const journaled = readJournal(journalDir, nodeId).entries;
    const knownDelivered = new Set(
      journaled
        .filter((e) => e.frame.recipients.some((r) => r.status === "delivered"))
        .map((e) => e.frame.messageId),
    );
    log(
      `${scenario}: origin pid ${first.pid} killed with ${inFlightAtKill} jobs in flight, ${sessionsAtDataAtKill} at DATA, ${sinkAcceptedAtKill} at the sink, ${journaled.length} results journaled and not acknowledged`,
    );

    // The same node id again, at once.
    const restartedAt = Date.now();
    const second = await start(
      o.sameNodeIdOnRestart === false ? `${nodeId}-other` : nodeId,
      o.keepJournalOnRestart === false ? `${journalDir}-lost` : journalDir,
    );
    await waitReady(second, logFile);
    const restartToReadyS = (Date.now() - restartedAt) / 1000;

    let sinkAcceptedAtRedisKill: number | undefined;
    let redisDownMs: number | undefined;
    if (redis) {
      await waitSink(Math.floor(n * (o.redisKillAtFraction ?? 0.6)), "before the Redis kill");
      sinkAcceptedAtRedisKill = sink.messages.length;
      const port = redis.port;
      const down = Date.now();
      process.kill(redis.pid, "SIGKILL");
      await redis.stop(); // only waits for the exit: the process is already gone
      redis = await startRedisServer({ port });
      redisDownMs = Date.now() - down;
      log(
        `${scenario}: Redis killed at ${sinkAcceptedAtRedisKill} at the sink, back after ${redisDownMs} ms`,
      );
    }

    // Every accepted message terminal in D1 (the catalog the API reads), bounded.
    const db = stack.edge.d1();
    const countTerminal = async () => {
      const r = await (
        await db
      )
        .prepare("SELECT status, COUNT(*) AS n FROM messages WHERE tenant_id = ?1 GROUP BY status")
        .bind(tenant.id)
        .all<{ status: string; n: number }>();
      return r.results.reduce((sum, row) => sum + (TERMINAL.has(row.status) ? row.n : 0), 0);
    };
    let doneAt = 0;
    for (;;) {
      if ((await countTerminal()) >= n) {
        doneAt = Date.now();
        break;
      }
      if (Date.now() > deadline) break;
      await sleep(100);
    }
    if (doneAt === 0) log(`${scenario}: not every message was terminal within the bound:\n${tail(logFile)}`);

    const rows = (
      await (
        await db
      )
        .prepare("SELECT id, status, message_id_header AS mid, dispatches FROM messages WHERE tenant_id = ?1")
        .bind(tenant.id)
        .all<{ id: string; status: string; mid: string; dispatches: number }>()
    ).results;
    const byId = new Map(rows.map((r) => [r.id, r]));
    const idByHeader = new Map(rows.map((r) => [r.mid.replace(/^<|>$/g, "").toLowerCase(), r.id]));
    // Copies at the sink per message id, by the Message-ID header the edge fixed at accept time.
    const copies = new Map<string, number[]>();
    let unknownAtSink = 0;
    for (const m of sink.messages) {
      const head = m.raw.toString("latin1").split(/\r?\n\r?\n/, 1)[0]!;
      const header = /^Message-ID:\s*<([^>\r\n]+)>/im.exec(head)?.[1]?.toLowerCase();
      const id = header ? idByHeader.get(header) : undefined;
      if (!id) {
        unknownAtSink++;
        continue;
      }
      const list = copies.get(id) ?? [];
      list.push(m.acceptedAt);
      copies.set(id, list);
    }
    const notTerminal = accepted.filter((id) => !TERMINAL.has(byId.get(id)?.status ?? ""));
    const otherTerminal: Record<string, number> = {};
    for (const id of accepted) {
      const s = byId.get(id)?.status;
      if (s && s !== "delivered" && TERMINAL.has(s)) otherTerminal[s] = (otherTerminal[s] ?? 0) + 1;
    }
    const delivered = accepted.filter((id) => byId.get(id)?.status === "delivered");
    const dup = [...copies.entries()].filter(([, at]) => at.length > 1);
    const result: ChaosResult = {
      scenario,
      redis: o.redis,
      accepted: n,
      delivered: delivered.length,
      notTerminal,
      otherTerminal,
      lost: delivered.filter((id) => !copies.has(id)),
      unknownAtSink,
      sinkAccepted: sink.messages.length,
      duplicates: dup.length,
      duplicateCopies: dup.reduce((sum, [, at]) => sum + at.length - 1, 0),
      duplicatesAnsweredBeforeKill: dup.filter(([, at]) => Math.min(...at) <= killedAt).length,
      duplicatesJournaled: dup.filter(([id]) => knownDelivered.has(id)).length,
      journaledAtKill: journaled.length,
      journaledDeliveredAtKill: knownDelivered.size,
      duplicateTimesFromKillMs: dup.slice(0, 20).map(([, at]) => at.map((t) => t - killedAt)),
      inFlightAtKill,
      sessionsAtDataAtKill,
      sinkAcceptedAtKill,
      abandonedAtSink: sink.abandoned,
      ...(sinkAcceptedAtRedisKill !== undefined ? { sinkAcceptedAtRedisKill } : {}),
      ...(redisDownMs !== undefined ? { redisDownMs } : {}),
      restartToReadyS: round1(restartToReadyS),
      resumedS: round1(
        (Math.min(...sink.messages.map((m) => m.acceptedAt).filter((t) => t >= restartedAt)) - restartedAt) /
          1000,
      ),
      drainS: doneAt ? round1((doneAt - restartedAt) / 1000) : NaN,
      runS: doneAt ? round1((doneAt - t0) / 1000) : NaN,
      leaseMs: CHAOS_LEASE_MS,
      dataDelayMs,
      hostSlotTtlMs: o.hostSlotTtlMs ?? null,
      killAtS: round1((killedAt - t0) / 1000),
      redispatched: accepted.filter((id) => (byId.get(id)?.dispatches ?? 0) > 1).length,
    };
    log(summaryLine(result));
    return result;
  } finally {
    for (const p of origins.reverse()) await p.stop();
    await stopRedis();
    await stopSink();
  }
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/** `chaos: N accepted, N delivered, D duplicates, drain X s after restart` (+ details). */
export function summaryLine(r: ChaosResult): string {
  return (
    `chaos${r.redis ? " (Redis)" : ""}: ${r.accepted} accepted, ${r.delivered} delivered, ${r.duplicates} duplicates ` +
    `(${r.duplicatesJournaled} of the ${r.journaledDeliveredAtKill} the killed process had journaled as delivered, ` +
    `${r.duplicatesAnsweredBeforeKill} with a 250 sent before the kill), drain ${r.drainS} s after restart` +
    (r.duplicates > 0
      ? ` [duplicates' first 250 at ${r.duplicateTimesFromKillMs.map((t) => t[0]).join(", ")} ms from the kill signal]`
      : "") +
    ` [killed ${r.killAtS} s into the run; ${r.lost.length} lost, ${r.notTerminal.length} not terminal; killed with ${r.inFlightAtKill} jobs in flight, ` +
    `${r.sessionsAtDataAtKill} at DATA, ${r.sinkAcceptedAtKill} at the sink; ${r.redispatched} re-dispatched; ` +
    `ready ${r.restartToReadyS} s and delivering ${r.resumedS} s after restart` +
    (r.redis ? `; Redis killed at ${r.sinkAcceptedAtRedisKill} at the sink, away ${r.redisDownMs} ms` : "") +
    `]`
  );
}

/**
 * What must hold after a run, as sentences (empty = fine). No message the killed process had journaled
 * as delivered is delivered again (its successor reports the journal before its hello and answers a
 * re-dispatch from it). A duplicate can then only be an SMTP session whose 250 the killed process never
 * read or journaled, one per session at most, and always a job it held. The drain bound
 * proves the boot-id re-dispatch: without it the killed process's jobs wait out the whole lease.
 */
export function chaosProblems(r: ChaosResult): string[] {
  const p: string[] = [];
  if (r.notTerminal.length)
    p.push(
      `${r.notTerminal.length} accepted messages never became terminal: ${r.notTerminal.slice(0, 10).join(", ")}`,
    );
  if (Object.keys(r.otherTerminal).length)
    p.push(`terminal but not delivered: ${JSON.stringify(r.otherTerminal)}`);
  if (r.delivered !== r.accepted) p.push(`${r.delivered} of ${r.accepted} delivered`);
  if (r.lost.length)
    p.push(`${r.lost.length} delivered messages never reached the sink: ${r.lost.slice(0, 10).join(", ")}`);
  if (r.unknownAtSink) p.push(`${r.unknownAtSink} messages at the sink were not accepted in this run`);
  if (r.duplicatesJournaled > 0)
    p.push(
      `${r.duplicatesJournaled} messages the killed process had journaled as delivered were delivered again`,
    );
  if (!(r.duplicates <= r.inFlightAtKill))
    p.push(`${r.duplicates} duplicates, more than the ${r.inFlightAtKill} jobs in flight at the kill`);
  if (!(r.drainS * 1000 < r.leaseMs / 2))
    p.push(`drain took ${r.drainS} s after the restart, not under half the ${r.leaseMs / 1000} s lease`);
  return p;
}

export interface ChaosBench {
  messages: number;
  runs: (ChaosResult & { problems: string[] })[];
}

/**
 * The benchmark step (`npm run bench -- --only=chaos`): both scenarios at N = 1,000 (300 with
 * --quick), the origin's defaults throughout (HOST_SLOT_TTL_MS included), on an edge of their own.
 * A failed check is recorded with the run's numbers rather than thrown, so the numbers are kept.
 */
export async function benchChaos(o: {
  quick: boolean;
  workDir: string;
  onCleanup?: Cleanup;
  log?: (msg: string) => void;
}): Promise<ChaosBench> {
  const messages = o.quick ? 300 : 1000;
  const dir = path.join(o.workDir, "chaos");
  const stack = await startChaosStack(dir, o.onCleanup);
  const runs: ChaosBench["runs"] = [];
  try {
    for (const redis of [false, true]) {
      const r = await runChaos(stack, {
        messages,
        redis,
        timeoutMs: 240_000,
        ...(o.log ? { log: o.log } : {}),
      });
      runs.push({ ...r, problems: chaosProblems(r) });
    }
  } finally {
    await stack.stop();
    // The edge's state is large and of no use afterwards; the origins' logs stay in `dir`.
    fs.rmSync(path.join(dir, "edge"), { recursive: true, force: true });
  }
  return { messages, runs };
}
