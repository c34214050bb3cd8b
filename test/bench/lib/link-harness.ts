/**
 * A stand-in for the edge's OriginHub that speaks the link protocol (shared/link/protocol.ts) and
 * nothing else, so the origin can be measured alone: answers hello with welcome, pushes pre-built
 * jobs within the credits the origin grants (hello.capacity, then credit frames), records results and
 * confirms them with resultAck. Frames are validated with the protocol's own parser.
 */
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import {
  LINK_PROTOCOL_VERSION,
  parseOriginFrame,
  type DeliveryJob,
  type EdgeFrame,
  type LinkResult,
  type RecipientOutcome,
} from "../../../shared/link/protocol.ts";

export interface LinkHarness {
  url: string;
  token: string;
  /** Resolves when an origin has said hello. */
  connected: Promise<void>;
  /**
   * Starts pushing `jobs`; returns Date.now() at the first push. Call again once allResults has
   * resolved for a new set (a measured run after a warm-up): results and frame counts start over.
   */
  start(jobs: DeliveryJob[]): number;
  /** Resolves with Date.now() when every job has a result. */
  allResults(timeoutMs: number): Promise<number>;
  outcomes(): Map<string, RecipientOutcome["status"]>;
  /** Frames received from the origin so far, by type (the link's per-message overhead). */
  framesIn(): Record<string, number>;
  close(): Promise<void>;
}

const JOBS_PER_FRAME = 100;

export async function startLinkHarness(token: string): Promise<LinkHarness> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/link", maxPayload: 4 * 1024 * 1024 });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const port = (wss.address() as AddressInfo).port;

  let socket: WebSocket | null = null;
  let credits = 0;
  let queue: DeliveryJob[] = [];
  let expected = 0;
  /** The job ids of the set being run (start). */
  let current = new Set<string>();
  const results = new Map<string, RecipientOutcome["status"]>();
  let onHello: () => void = () => {};
  const connected = new Promise<void>((r) => (onHello = r));
  let doneWaiters: ((t: number) => void)[] = [];
  let pendingAcks: string[] = [];
  const framesIn: Record<string, number> = {};

  const send = (frame: EdgeFrame) => socket?.send(JSON.stringify(frame));
  const pump = () => {
    while (socket && credits > 0 && queue.length > 0) {
      const n = Math.min(credits, JOBS_PER_FRAME, queue.length);
      const batch = queue.slice(0, n);
      queue = queue.slice(n);
      credits -= n;
      send({ type: "jobs", jobs: batch });
    }
  };
  const flushAcks = () => {
    if (pendingAcks.length === 0) return;
    send({ type: "resultAck", jobIds: pendingAcks });
    pendingAcks = [];
  };

  const record = (list: LinkResult[]) => {
    for (const f of list) {
      // A late result of an earlier set (a re-send) is acknowledged but not counted.
      if (!current.has(f.jobId)) {
        if (pendingAcks.length === 0) setImmediate(flushAcks);
        pendingAcks.push(f.jobId);
        continue;
      }
      const status = f.recipients.every((r) => r.status === "delivered")
        ? "delivered"
        : f.recipients[0]!.status;
      results.set(f.jobId, status);
      if (pendingAcks.length === 0) setImmediate(flushAcks);
      pendingAcks.push(f.jobId);
    }
    if (expected > 0 && results.size >= expected) {
      const now = Date.now();
      for (const w of doneWaiters) w(now);
      doneWaiters = [];
    }
  };

  wss.on("connection", (ws, req) => {
    if (req.headers.authorization !== `Bearer ${token}`) {
      ws.close(1008, "bad token");
      return;
    }
    socket = ws;
    ws.on("message", (data) => {
      const parsed = parseOriginFrame(String(data));
      if (!parsed.ok) throw new Error(`harness: invalid frame from origin: ${parsed.error}`);
      const f = parsed.frame;
      framesIn[f.type] = (framesIn[f.type] ?? 0) + 1;
      switch (f.type) {
        case "hello":
          credits = f.capacity;
          send({ type: "welcome", protocol: LINK_PROTOCOL_VERSION, shard: 0, shards: 1, leaseMs: 300_000 });
          onHello();
          pump();
          return;
        case "credit":
          credits += f.credits;
          pump();
          return;
        case "result":
          record([f]);
          return;
        case "results":
          record(f.results);
          return;
        case "ping":
          send({ type: "pong" });
          return;
        default:
          return;
      }
    });
  });

  return {
    url: `http://127.0.0.1:${port}`,
    token,
    connected,
    start(jobs) {
      // Count from here: the hello and anything written before the run are not per-message work.
      for (const k of Object.keys(framesIn)) delete framesIn[k];
      results.clear();
      current = new Set(jobs.map((j) => j.jobId));
      expected = jobs.length;
      queue = [...jobs];
      const t = Date.now();
      pump();
      return t;
    },
    allResults(timeoutMs) {
      if (expected > 0 && results.size >= expected) return Promise.resolve(Date.now());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`harness got ${results.size} of ${expected} results in ${timeoutMs} ms`)),
          timeoutMs,
        );
        doneWaiters.push((t) => {
          clearTimeout(timer);
          resolve(t);
        });
      });
    },
    outcomes: () => results,
    framesIn: () => ({ ...framesIn }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  };
}
