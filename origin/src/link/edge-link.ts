/**
 * One WebSocket from this origin node to one OriginHub shard (protocol: shared/link/protocol.ts).
 *
 * Invariants:
 *  - A result stays in `unacked` until the edge confirms it with resultAck; it is re-sent on every
 *    reconnect and periodically, so a result is never lost to a dropped link (the edge de-duplicates).
 *  - Credits are granted only after a job's result is handed to the link, so the edge never gives this
 *    node more jobs than it has room for.
 *  - The link reconnects by itself with capped exponential backoff and jitter until `close()`.
 */
import { WebSocket } from "ws";
import {
  LINK_PROTOCOL_VERSION,
  parseEdgeFrame,
  type DeliveryJob,
  type EdgeFrame,
  type OriginFrame,
} from "../../../shared/link/protocol.ts";

export interface EdgeLinkOptions {
  edgeUrl: string;
  token: string;
  shard: number;
  nodeId: string;
  version: string;
  /** Jobs this node can take right now; sent in hello, so a reconnect never over-asks. */
  freeCapacity: () => number;
  onJobs: (jobs: DeliveryJob[], link: EdgeLink) => void;
  onWelcome?: (welcome: Extract<EdgeFrame, { type: "welcome" }>) => void;
  onStateChange?: (connected: boolean) => void;
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  /** Send a ping this often; a link that has heard nothing for 3 intervals is treated as dead. */
  pingIntervalMs?: number;
  resendIntervalMs?: number;
}

type ResultFrame = Extract<OriginFrame, { type: "result" }>;

const MAX_BACKOFF_MS = 30_000;
const CREDIT_COALESCE_MS = 2;

export class EdgeLink {
  private ws: WebSocket | null = null;
  private closed = false;
  private ready = false;
  private attempts = 0;
  private lastHeard = 0;
  private readonly unacked = new Map<string, { frame: ResultFrame; sentAt: number }>();
  private pendingCredits = 0;
  private draining = false;
  private timers: NodeJS.Timeout[] = [];
  private reconnectTimer: NodeJS.Timeout | null = null;
  private creditTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: EdgeLinkOptions) {}

  get connected(): boolean {
    return this.ready;
  }

  get unackedResults(): number {
    return this.unacked.size;
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

  /** Hands a finished job's result to the edge (kept until acknowledged) and frees one credit. */
  sendResult(frame: ResultFrame): void {
    this.unacked.set(frame.jobId, { frame, sentAt: Date.now() });
    this.write(frame);
    this.grantCredits(1);
  }

  /** Tells the edge which jobs this node now holds, which extends their lease. */
  ack(jobIds: string[]): void {
    if (jobIds.length > 0) this.write({ type: "ack", jobIds });
  }

  grantCredits(n: number): void {
    if (this.draining) return;
    this.pendingCredits += n;
    // Credits freed within a few milliseconds travel in one frame, so a busy node sends the edge one
    // "room for N more" instead of N frames, and gets its next jobs in larger batches.
    if (this.ready && !this.creditTimer) {
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
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.creditTimer) clearTimeout(this.creditTimer);
    this.ws?.close(1000, "origin shutting down");
    this.setReady(false);
  }

  // ------------------------------------------------------------------------------------------

  private connect(): void {
    if (this.closed) return;
    const url = new URL("/link", this.opts.edgeUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("shard", String(this.opts.shard));
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${this.opts.token}` },
      handshakeTimeout: 10_000,
      maxPayload: 2 * 1024 * 1024,
    });
    this.ws = ws;
    ws.on("open", () => {
      this.lastHeard = Date.now();
      // hello states the whole free room; credits earned while disconnected are part of it.
      this.pendingCredits = 0;
      this.write({
        type: "hello",
        protocol: LINK_PROTOCOL_VERSION,
        nodeId: this.opts.nodeId,
        version: this.opts.version,
        capacity: this.draining ? 0 : Math.max(0, Math.min(10_000, this.opts.freeCapacity())),
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
    switch (frame.type) {
      case "welcome":
        this.attempts = 0;
        this.setReady(true);
        this.opts.onWelcome?.(frame);
        // Results the edge has not confirmed yet (from before a reconnect) go again.
        for (const entry of this.unacked.values()) {
          entry.sentAt = Date.now();
          this.write(entry.frame);
        }
        this.flushCredits();
        return;
      case "jobs":
        this.opts.onJobs(frame.jobs, this);
        return;
      case "resultAck":
        for (const id of frame.jobIds) this.unacked.delete(id);
        return;
      case "error":
        this.opts.log("error", "edge reported an error", { code: frame.code, message: frame.message });
        return;
      case "ping":
        this.write({ type: "pong" });
        return;
      case "pong":
        return;
    }
  }

  private setReady(ready: boolean): void {
    if (this.ready === ready) return;
    this.ready = ready;
    this.opts.onStateChange?.(ready);
  }

  private flushCredits(): void {
    if (this.pendingCredits >= 1) {
      const credits = Math.min(10_000, this.pendingCredits);
      if (this.write({ type: "credit", credits })) this.pendingCredits -= credits;
    }
  }

  private write(frame: OriginFrame): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
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
    for (const entry of this.unacked.values()) {
      if (now - entry.sentAt >= intervalMs) {
        entry.sentAt = now;
        this.write(entry.frame);
      }
    }
  }
}
