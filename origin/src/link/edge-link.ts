/**
 * One WebSocket from this origin process to one OriginHub shard (frames: shared/link/protocol.ts;
 * rules: docs/link-protocol.md).
 *
 * Invariants:
 *  - A result stays in `unacked` until the edge confirms it with resultAck; it is re-sent on every
 *    connection, BEFORE the hello, and periodically, so a result is never lost to a dropped link (the
 *    edge de-duplicates). Before the hello matters after a restart: `preloadResults` hands the link the
 *    results an earlier process journaled but never saw acknowledged, and the hub applies a result to
 *    the dispatch it names only while that row is still leased, which the hello of a new boot id ends
 *    (docs/link-protocol.md#restarts-and-boot-ids).
 *    While `maxUnackedResults` or more wait (D1 down, say), `backPressured` is true and the job runner
 *    grants this link no credit: memory stays bounded and no result is dropped.
 *  - Results finished within RESULT_COALESCE_MS of each other travel in one `results` frame (at most
 *    MAX_RESULTS_PER_FRAME, under FRAME_BUDGET_BYTES), so a busy node makes one WebSocket write for
 *    them, not one per job, and the hub handles (and commits) one frame for them. Only after
 *    `welcome`: before it this link does not know the hub's protocol, and the results written ahead
 *    of the hello go one `result` frame each. Credits granted while results wait go out right after
 *    them (the jobs that finished freed them); every frame of one event-loop turn leaves in one socket
 *    write (`corkUntilIdle`).
 *  - The link knows what the hub holds for it: `creditsOutstanding` = credits granted (hello.capacity,
 *    credit frames, pending ones) minus jobs received, zeroed by a `release`. The job runner grants only
 *    what keeps `creditsOutstanding` + jobs held ≤ this link's share of the node's capacity.
 *  - Jobs this process holds (`held`: acknowledged, not yet reported) are renewed with an `ack` every
 *    leaseMs / 5 while connected, also over a new connection after a reconnect (the hub ties leases to
 *    the node id + boot id, not to the socket). For each, `leaseSafeUntil` is a conservative estimate
 *    of the hub's lease end: last ack written + leaseMs − leaseMs / 5 (a written frame may be lost with
 *    the connection, and the one before it is at most leaseMs / 5 older). Only jobs still inside it are
 *    renewed, so a job the hub may already have given to someone else is never claimed back.
 *  - Timing, with L = welcome.leaseMs: renewal every L/5; `jobDeadlineMs` = 0.4 × L. A job started at t
 *    with leaseSafeUntil ≥ t + 0.4 × L ends by its deadline while the hub still holds its lease even if
 *    the link drops at t; the message claim (JOB_CLAIM_TTL_MS, at least L + 0.4 × L) outlives both:
 *    job deadline < lease < claim.
 *  - `bootId` is fixed for the life of this process and sent in every hello: a restart is a new boot id,
 *    and the hub re-dispatches what the previous process held at once.
 *  - The link reconnects by itself with capped exponential backoff and jitter until `close()`.
 */
import { WebSocket } from "ws";
import {
  FRAME_BUDGET_BYTES,
  LINK_PROTOCOL_VERSION,
  MAX_FRAME_BYTES,
  MAX_RESULTS_PER_FRAME,
  parseEdgeFrame,
  utf8ByteLength,
  type ChannelJob,
  type DeliveryJob,
  type EdgeFrame,
  type InboundEvent,
  type OriginFrame,
} from "../../../shared/link/protocol.ts";

export interface EdgeLinkOptions {
  edgeUrl: string;
  token: string;
  shard: number;
  nodeId: string;
  /** Random per process (node.ts makes one); tells the hub a restart from a reconnect. */
  bootId: string;
  version: string;
  /** The node's IP pool names (IP_POOLS), announced in hello; none when absent or empty. */
  pools?: readonly string[];
  /** Jobs this link can take right now (its share of the node's room); sent in hello. */
  freeCapacity: () => number;
  onJobs: (jobs: DeliveryJob[], link: EdgeLink) => void;
  /**
   * A jobs frame's channel jobs (SMS, push, web push; protocol 6, docs/link-protocol.md#channel-jobs),
   * after its delivery jobs. Absent: they are released at once, back to the outbox.
   */
  onChannelJobs?: (jobs: ChannelJob[], link: EdgeLink) => void;
  onWelcome?: (welcome: Extract<EdgeFrame, { type: "welcome" }>) => void;
  onStateChange?: (connected: boolean) => void;
  /** Results were acknowledged (the outcome journal marks them done); back-pressured room may be free again. */
  onResultAck?: (jobIds: string[]) => void;
  /** The edge recorded these inbound events (origin/src/inbound/forwarder.ts keeps them until then). */
  onInboundAck?: (eventKeys: string[]) => void;
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  /** Send a ping this often; a link that has heard nothing for 3 intervals is treated as dead. */
  pingIntervalMs?: number;
  resendIntervalMs?: number;
  /** Results awaiting resultAck at which this link stops taking work (LINK_MAX_UNACKED_RESULTS). */
  maxUnackedResults?: number;
}

type ResultFrame = Extract<OriginFrame, { type: "result" }>;

const MAX_BACKOFF_MS = 30_000;
const CREDIT_COALESCE_MS = 2;
/**
 * How long a finished job's result may wait for others to share its frame. Short next to a delivery
 * (the hub then waits up to 5 ms more to share a D1 batch), long next to one SMTP reply. Each frame
 * costs the hub a round of work whatever it holds (the frame, the D1 batch of its outcomes, the
 * credits it brings and the dispatch they start, the ack of the jobs that dispatch sends): at 5 ms a
 * busy node sent about 12 results a frame; at 15 ms the edge spent a tenth to a fifth less CPU per
 * delivered message in five alternating runs (docs/performance.md, "Fewer, fuller frames").
 */
export const RESULT_COALESCE_MS = 15;
/** Before the first welcome nothing is held; this only sizes the timers until leaseMs is known. */
const DEFAULT_LEASE_MS = 300_000;

export class EdgeLink {
  private ws: WebSocket | null = null;
  private closed = false;
  private ready = false;
  private attempts = 0;
  private lastHeard = 0;
  private readonly unacked = new Map<string, { frame: ResultFrame; sentAt: number }>();
  /** Acknowledged jobs not yet reported, with the estimate of the hub's lease end (see the header). */
  private readonly held = new Map<string, number>();
  /** Jobs held here that reached a later lifecycle stage since the last renewal (`noteStage`). */
  private readonly stages = new Map<string, "rendered" | "sending">();
  private pendingCredits = 0;
  private hubCredits = 0;
  private draining = false;
  private lease = DEFAULT_LEASE_MS;
  private timers: NodeJS.Timeout[] = [];
  private renewTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private creditTimer: NodeJS.Timeout | null = null;
  /** Results to write in the next `results` frame(s), at the end of this tick (see the header). */
  private outgoing: ResultFrame[] = [];
  private resultsTimer: NodeJS.Timeout | null = null;
  /** Frames written to the socket since this link was made (tests and benchmarks read it). */
  framesOut = 0;
  /** The socket is corked until the end of this event-loop turn (`corkUntilIdle`). */
  private corked = false;

  constructor(private readonly opts: EdgeLinkOptions) {}

  get connected(): boolean {
    return this.ready;
  }

  get shard(): number {
    return this.opts.shard;
  }

  get unackedResults(): number {
    return this.unacked.size;
  }

  /** True while too many results wait for the edge: take no more work on this link. */
  get backPressured(): boolean {
    return this.unacked.size >= (this.opts.maxUnackedResults ?? 1_000);
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Credits the hub holds for this link (granted, not yet used), including ones about to be sent. */
  get creditsOutstanding(): number {
    return this.hubCredits + this.pendingCredits;
  }

  /** The hub's lease (welcome.leaseMs). */
  get leaseMs(): number {
    return this.lease;
  }

  /** How long one job may run: 0.4 × leaseMs (header: deadline < lease < claim). */
  get jobDeadlineMs(): number {
    return Math.floor(this.lease * 0.4);
  }

  private get renewIntervalMs(): number {
    return Math.max(50, Math.floor(this.lease / 5));
  }

  start(): void {
    const ping = this.opts.pingIntervalMs ?? 15_000;
    const resend = this.opts.resendIntervalMs ?? 15_000;
    this.timers.push(
      setInterval(() => this.heartbeat(ping), ping),
      setInterval(() => this.resendStale(resend), resend),
    );
    this.connect();
  }

  /**
   * Acknowledges jobs this process will run: the hub extends their lease and keeps them with this
   * process across reconnects. Returns the ids actually acknowledged (none if the link is down: the hub
   * then gives those jobs back to the outbox itself, so they must not run here).
   */
  take(jobIds: string[]): string[] {
    if (jobIds.length === 0) return [];
    const at = Date.now();
    if (!this.write({ type: "ack", jobIds })) return [];
    for (const id of jobIds) this.held.set(id, this.safeUntil(at));
    return jobIds;
  }

  /** Gives jobs back: the hub returns them to the outbox at once and zeroes this link's credits. */
  release(jobIds: string[]): void {
    if (jobIds.length === 0) return;
    for (const id of jobIds) this.held.delete(id);
    if (this.write({ type: "release", jobIds })) {
      this.hubCredits = 0;
      this.pendingCredits = 0;
    }
  }

  /** The latest time this process can count on the hub still leasing `jobId` to it; 0 if not held. */
  leaseSafeUntil(jobId: string): number {
    return this.held.get(jobId) ?? 0;
  }

  /**
   * Results an earlier process of this node journaled and never saw acknowledged: kept like this
   * process's own and written on the next connection before its hello. Call before `start()`.
   */
  preloadResults(frames: ResultFrame[]): void {
    for (const frame of frames) this.unacked.set(frame.jobId, { frame, sentAt: 0 });
  }

  /** Hands a finished job's result to the edge (kept until acknowledged). */
  /**
   * A held job reached a lifecycle stage (`rendered`, then `sending`): told to the hub with the next
   * renewal (docs/link-protocol.md#stages), never in a frame of its own; its result makes it moot.
   */
  noteStage(jobId: string, stage: "rendered" | "sending"): void {
    if (!this.held.has(jobId) || this.stages.get(jobId) === "sending") return;
    this.stages.set(jobId, stage);
  }

  sendResult(frame: ResultFrame): void {
    this.held.delete(frame.jobId);
    this.stages.delete(frame.jobId);
    this.unacked.set(frame.jobId, { frame, sentAt: Date.now() });
    // Not welcomed on this connection yet: one `result` frame, valid before the hello (header).
    if (!this.ready) {
      this.write(frame);
      return;
    }
    this.outgoing.push(frame);
    this.resultsTimer ??= setTimeout(() => {
      this.resultsTimer = null;
      const list = this.outgoing;
      this.outgoing = [];
      // A link that dropped meanwhile sends them again on its next connection (they stay in `unacked`).
      if (!this.ready) return;
      this.writeResults(list);
      // The credits freed by these jobs go with their results, in the same socket write (header).
      if (this.creditTimer) {
        clearTimeout(this.creditTimer);
        this.creditTimer = null;
      }
      this.flushCredits();
    }, RESULT_COALESCE_MS);
  }

  /**
   * Sends inbound bounce/complaint events (docs/bounces.md); false when the link is down. Keeping them
   * until `inboundAck` is the inbound forwarder's job.
   */
  sendInbound(events: InboundEvent[]): boolean {
    return this.ready && this.write({ type: "inbound", events });
  }

  /** Stops holding a job without a result (it will not run here; the hub's lease brings it back). */
  forget(jobId: string): void {
    this.held.delete(jobId);
  }

  grantCredits(n: number): void {
    if (this.draining || n <= 0) return;
    this.pendingCredits += n;
    // Credits freed within a few milliseconds travel in one frame, so a busy node sends the edge one
    // "room for N more" instead of N frames, and gets its next jobs in larger batches.
    // While results wait for their frame, the credits wait with them (the results timer sends both).
    if (this.ready && !this.creditTimer && !this.resultsTimer) {
      this.creditTimer = setTimeout(() => {
        this.creditTimer = null;
        if (this.ready) this.flushCredits();
      }, CREDIT_COALESCE_MS);
    }
  }

  /** Stops asking for work; jobs already here still finish and report. */
  stopCredits(): void {
    this.draining = true;
    this.pendingCredits = 0;
  }

  /** Waits until every result has been acknowledged, or the timeout passes. */
  async waitForAcks(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.unacked.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    return this.unacked.size === 0;
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    if (this.renewTimer) clearInterval(this.renewTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.creditTimer) clearTimeout(this.creditTimer);
    if (this.resultsTimer) clearTimeout(this.resultsTimer);
    this.resultsTimer = null;
    this.outgoing = [];
    this.ws?.close(1000, "origin shutting down");
    this.setReady(false);
  }

  /** Drops the connection as a network failure would (tests); the link reconnects by itself. */
  dropConnection(): void {
    this.ws?.terminate();
  }

  // ------------------------------------------------------------------------------------------

  private safeUntil(writtenAt: number): number {
    return writtenAt + this.lease - this.renewIntervalMs;
  }

  private connect(): void {
    if (this.closed) return;
    const url = new URL("/link", this.opts.edgeUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("shard", String(this.opts.shard));
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${this.opts.token}` },
      handshakeTimeout: 10_000,
      // The hub packs frames up to FRAME_BUDGET_BYTES, under the platform's cap: accept up to the cap.
      maxPayload: MAX_FRAME_BYTES,
      // No permessage-deflate (RFC 7692; docs/link-protocol.md#connecting): ws offers it by default
      // and workerd accepts, and then every frame is deflated by its sender and inflated by its
      // receiver (here: every jobs frame, on the event loop that speaks SMTP), CPU on both ends for
      // bytes that cross one link per node.
      perMessageDeflate: false,
    });
    this.ws = ws;
    ws.on("open", () => {
      this.lastHeard = Date.now();
      // hello states this link's whole free room; credits earned while disconnected are part of it.
      this.pendingCredits = 0;
      const capacity =
        this.draining || this.backPressured ? 0 : Math.max(0, Math.min(10_000, this.opts.freeCapacity()));
      this.hubCredits = capacity;
      // Results first (see the header): applied by the dispatch they name, they need no hello, and after
      // a restart they must reach the hub before the hello retires the previous process's leases.
      for (const entry of this.unacked.values()) {
        entry.sentAt = Date.now();
        this.write(entry.frame);
      }
      this.write({
        type: "hello",
        protocol: LINK_PROTOCOL_VERSION,
        nodeId: this.opts.nodeId,
        bootId: this.opts.bootId,
        version: this.opts.version,
        capacity,
        ...(this.opts.pools && this.opts.pools.length > 0 ? { pools: [...this.opts.pools] } : {}),
      });
    });
    ws.on("message", (data, isBinary) => {
      this.lastHeard = Date.now();
      const text = isBinary ? Buffer.from(data as Buffer).toString("utf8") : String(data);
      this.onFrame(text);
    });
    ws.on("unexpected-response", (_req, res) => {
      this.opts.log("error", "edge refused the link", { status: res.statusCode, shard: this.opts.shard });
      ws.terminate();
    });
    ws.on("error", (err) => {
      this.opts.log("warn", "link error", { error: err.message, shard: this.opts.shard });
    });
    ws.on("close", (code) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.hubCredits = 0;
      this.setReady(false);
      if (this.closed) return;
      const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.attempts) * (0.5 + Math.random() / 2);
      this.attempts++;
      this.opts.log("warn", "link closed; reconnecting", {
        code,
        shard: this.opts.shard,
        inMs: Math.round(delay),
      });
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private onFrame(text: string): void {
    const parsed = parseEdgeFrame(text);
    if (!parsed.ok) {
      this.opts.log("error", "invalid frame from edge", { error: parsed.error });
      return;
    }
    const frame = parsed.frame;
    // After close(), frames still arrive until the close handshake ends (ws delivers them in CLOSING).
    // Acting on a welcome would mark the link up and make node.ts open the other shards' links for a
    // node that is draining; jobs would run on its closed engine and fail for good. Only
    // acknowledgements of what this process sent still count.
    if (this.closed && frame.type !== "resultAck" && frame.type !== "inboundAck") return;
    switch (frame.type) {
      case "welcome":
        this.attempts = 0;
        if (frame.leaseMs !== this.lease || !this.renewTimer) {
          this.lease = frame.leaseMs;
          if (this.renewTimer) clearInterval(this.renewTimer);
          this.renewTimer = setInterval(() => this.renew(), this.renewIntervalMs);
        }
        this.setReady(true);
        this.opts.onWelcome?.(frame);
        // Jobs held from before a reconnect: claim them on this connection (results not yet confirmed
        // went before the hello).
        this.renew();
        this.flushCredits();
        return;
      case "jobs": {
        // Channel jobs ride beside delivery jobs and cost a credit each too (docs/link-protocol.md#channel-jobs).
        const channelJobs = frame.channelJobs ?? [];
        this.hubCredits = Math.max(0, this.hubCredits - frame.jobs.length - channelJobs.length);
        if (frame.jobs.length > 0 || channelJobs.length === 0) this.opts.onJobs(frame.jobs, this);
        if (channelJobs.length === 0) return;
        if (this.opts.onChannelJobs) this.opts.onChannelJobs(channelJobs, this);
        else this.release(channelJobs.map((j) => j.jobId));
        return;
      }
      case "resultAck":
        for (const id of frame.jobIds) this.unacked.delete(id);
        this.opts.onResultAck?.(frame.jobIds);
        return;
      case "inboundAck":
        this.opts.onInboundAck?.(frame.eventKeys);
        return;
      case "error":
        this.opts.log("error", "edge reported an error", {
          code: frame.code,
          message: frame.message,
          // The edge retired this process's boot id: a newer process announced the same NODE_ID.
          ...(frame.code === "boot_superseded"
            ? { hint: `another origin process uses NODE_ID "${this.opts.nodeId}"; give each process its own` }
            : {}),
        });
        return;
      case "ping":
        this.write({ type: "pong" });
        return;
      case "pong":
        return;
    }
  }

  /**
   * Renews the lease of every job still safely held (forgetting the ones whose lease may have run out),
   * and of every job whose result waits for resultAck: while D1 is down the hub keeps such a job leased
   * and does not apply its result, so without renewals an outage longer than the lease would give the
   * job to the outbox again and the message would be delivered twice. Renewing those is always safe:
   * the hub extends a lease only for the same dispatch, still leased to this process.
   */
  private renew(): void {
    if (!this.ready || this.held.size + this.unacked.size === 0) return;
    const now = Date.now();
    const ids: string[] = [];
    for (const [id, until] of this.held) {
      if (until > now) ids.push(id);
      else this.held.delete(id);
    }
    const reported = [...this.unacked.keys()];
    if (ids.length + reported.length === 0) return;
    const stages = this.takeStages();
    for (let i = 0; i < ids.length; i += 10_000) {
      const chunk = ids.slice(i, i + 10_000);
      if (!this.write({ type: "ack", jobIds: chunk, ...(i === 0 && stages ? { stages } : {}) })) return;
      for (const id of chunk) this.held.set(id, this.safeUntil(now));
    }
    for (let i = 0; i < reported.length; i += 10_000) {
      if (!this.write({ type: "ack", jobIds: reported.slice(i, i + 10_000) })) return;
    }
  }

  /** The stages noted since the last renewal, for jobs still held (at most 10,000 of each), and forgets them. */
  private takeStages(): { rendered?: string[]; sending?: string[] } | null {
    if (this.stages.size === 0) return null;
    const rendered: string[] = [];
    const sending: string[] = [];
    for (const [id, stage] of this.stages) {
      if (!this.held.has(id)) continue;
      const list = stage === "sending" ? sending : rendered;
      if (list.length < 10_000) list.push(id);
    }
    this.stages.clear();
    if (rendered.length + sending.length === 0) return null;
    return { ...(rendered.length > 0 ? { rendered } : {}), ...(sending.length > 0 ? { sending } : {}) };
  }

  private setReady(ready: boolean): void {
    if (this.ready === ready) return;
    this.ready = ready;
    this.opts.onStateChange?.(ready);
  }

  private flushCredits(): void {
    if (this.pendingCredits >= 1) {
      const credits = Math.min(10_000, this.pendingCredits);
      if (this.write({ type: "credit", credits })) {
        this.pendingCredits -= credits;
        this.hubCredits += credits;
      }
    }
  }

  private write(frame: OriginFrame): boolean {
    return this.writeText(JSON.stringify(frame));
  }

  private writeText(text: string): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    this.corkUntilIdle(ws);
    ws.send(text);
    this.framesOut++;
    return true;
  }

  /**
   * Holds the socket's writes until the end of this turn of the event loop, so every frame written
   * in it (an ack and a credit, a results frame and the credit that follows it) leaves in one system
   * call instead of one each: in the origin's CPU profile the link's socket writes were about 8 % of
   * the event loop's busy time, one write per frame. The bytes and their order are
   * the same; a frame waits at most until setImmediate. `_socket` is ws's own field for the
   * connection's net.Socket (ws corks it itself around each frame's header and payload).
   */
  private corkUntilIdle(ws: WebSocket): void {
    if (this.corked) return;
    const socket = (ws as unknown as { _socket?: { cork?(): void; uncork?(): void } })._socket;
    if (!socket?.cork || !socket.uncork) return;
    socket.cork();
    this.corked = true;
    setImmediate(() => {
      this.corked = false;
      socket.uncork!();
    });
  }

  /**
   * Writes results as `results` frames of at most MAX_RESULTS_PER_FRAME and FRAME_BUDGET_BYTES, each
   * result serialized once (the job runner keeps one result under the budget on its own).
   */
  private writeResults(list: ResultFrame[]): void {
    const prefix = '{"type":"results","results":[';
    const suffix = "]}";
    let parts: string[] = [];
    let bytes = prefix.length + suffix.length;
    const flush = () => {
      if (parts.length > 0) this.writeText(`${prefix}${parts.join(",")}${suffix}`);
      parts = [];
      bytes = prefix.length + suffix.length;
    };
    for (const frame of list) {
      const { type: _type, ...result } = frame;
      const json = JSON.stringify(result);
      const size = utf8ByteLength(json) + 1;
      if (parts.length >= MAX_RESULTS_PER_FRAME || (parts.length > 0 && bytes + size > FRAME_BUDGET_BYTES))
        flush();
      parts.push(json);
      bytes += size;
    }
    flush();
  }

  private heartbeat(intervalMs: number): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > intervalMs * 3) {
      this.opts.log("warn", "link silent; reconnecting", { shard: this.opts.shard });
      ws.terminate();
      return;
    }
    this.write({ type: "ping" });
  }

  private resendStale(intervalMs: number): void {
    if (!this.ready) return;
    const now = Date.now();
    const stale: ResultFrame[] = [];
    for (const entry of this.unacked.values()) {
      if (now - entry.sentAt >= intervalMs) {
        entry.sentAt = now;
        stale.push(entry.frame);
      }
    }
    this.writeResults(stale);
  }
}
