/**
 * A benchmark driver that speaks the origin's side of the link protocol (docs/link-protocol.md) and
 * answers every job at once, "delivered", without building or sending mail: what is left on the
 * machine is the hub's own work per delivered message (dispatch, jobs frames, acks, results and their
 * D1 writes), so its CPU per message can be read from /proc without the origin's sharing the cores.
 * It behaves as a real origin does on the wire: `hello` with a capacity, an `ack` for every jobs frame,
 * the results coalesced into `results` frames (at most MAX_RESULTS_PER_FRAME) for as long as the
 * origin's link lets them wait (RESULT_COALESCE_MS), then a `credit` for the jobs answered. Not a test double: nothing here stands in for the hub.
 */
import { randomUUID } from "node:crypto";
import { WebSocket } from "ws";
import {
  LINK_PROTOCOL_VERSION,
  MAX_RESULTS_PER_FRAME,
  type DeliveryJob,
  type EdgeFrame,
  type LinkResult,
} from "../../../shared/link/protocol.ts";
import { RESULT_COALESCE_MS } from "../../../origin/src/link/edge-link.ts";

export interface InstantOrigin {
  /** Results the hub acknowledged so far. */
  acknowledged(): number;
  /** Resolves when `n` results have been acknowledged. */
  waitForAcks(n: number, timeoutMs: number): Promise<void>;
  close(): void;
}

export async function startInstantOrigin(
  workerUrl: string,
  originToken: string,
  capacity = 100,
): Promise<InstantOrigin> {
  const ws = new WebSocket(`${workerUrl.replace(/^http/, "ws")}/link?shard=0`, {
    headers: { authorization: `Bearer ${originToken}` },
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  let acked = 0;
  let waiters: { n: number; resolve: () => void }[] = [];
  let pending: LinkResult[] = [];
  let timer: NodeJS.Timeout | null = null;
  const flush = () => {
    timer = null;
    const list = pending;
    pending = [];
    for (let i = 0; i < list.length; i += MAX_RESULTS_PER_FRAME) {
      ws.send(JSON.stringify({ type: "results", results: list.slice(i, i + MAX_RESULTS_PER_FRAME) }));
    }
    if (list.length > 0) ws.send(JSON.stringify({ type: "credit", credits: list.length }));
  };
  ws.on("message", (data) => {
    const frame = JSON.parse(String(data)) as EdgeFrame;
    if (frame.type === "jobs") {
      const jobs: DeliveryJob[] = frame.jobs;
      ws.send(JSON.stringify({ type: "ack", jobIds: jobs.map((j) => j.jobId) }));
      for (const j of jobs) {
        pending.push({
          jobId: j.jobId,
          messageId: j.messageId,
          attempt: j.attempt,
          recipients: j.recipients.map((recipient) => ({
            recipient,
            status: "delivered",
            smtpCode: 250,
            enhancedCode: "2.0.0",
            response: "250 2.0.0 Ok: queued as BENCH",
            mxHost: "mx.bench.test",
            tls: false,
            latencyMs: 1,
          })),
        });
      }
      // Coalesced as the origin's link does.
      timer ??= setTimeout(flush, RESULT_COALESCE_MS);
    } else if (frame.type === "resultAck") {
      acked += frame.jobIds.length;
      waiters = waiters.filter((w) => {
        if (acked < w.n) return true;
        w.resolve();
        return false;
      });
    } else if (frame.type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    }
  });
  ws.send(
    JSON.stringify({
      type: "hello",
      protocol: LINK_PROTOCOL_VERSION,
      nodeId: "bench-instant",
      bootId: `${Date.now()}-${randomUUID().slice(0, 8)}`,
      version: "bench",
      capacity,
    }),
  );
  return {
    acknowledged: () => acked,
    waitForAcks(n, timeoutMs) {
      if (acked >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`only ${acked} of ${n} results acknowledged after ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(t);
            resolve();
          },
        });
      });
    },
    close() {
      if (timer) clearTimeout(timer);
      ws.close(1000);
    },
  };
}
