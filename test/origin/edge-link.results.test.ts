/**
 * EdgeLink's results on the wire (origin/src/link/edge-link.ts, header): results finished together
 * travel in one `results` frame once the link is welcomed; before the welcome (and first on every new
 * connection, ahead of the hello) each goes as a `result` frame of its own; what the hub has not
 * acknowledged is sent again after a reconnect, and what it acknowledged is not. The hub here is a
 * scripted peer on a loopback WebSocket server that records every frame in order (the real hub's
 * handling of `results` frames is test/edge/hub-storage.test.ts).
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { LINK_PROTOCOL_VERSION, MAX_RESULTS_PER_FRAME, type LinkResult } from "../../shared/link/protocol.ts";

interface Peer {
  url: string;
  /** Frames received, per connection, in order. */
  connections: { ws: WebSocket; frames: { type: string; [k: string]: unknown }[] }[];
  close(): Promise<void>;
}

async function scriptedHub(): Promise<Peer> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const peer: Peer = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of peer.connections) c.ws.terminate();
        server.close(() => resolve());
      }),
  };
  server.on("connection", (ws) => {
    const conn = { ws, frames: [] as { type: string; [k: string]: unknown }[] };
    peer.connections.push(conn);
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as { type: string };
      conn.frames.push(frame);
      if (frame.type === "hello") {
        ws.send(
          JSON.stringify({
            type: "welcome",
            protocol: LINK_PROTOCOL_VERSION,
            shard: 0,
            shards: 1,
            leaseMs: 300_000,
          }),
        );
      }
    });
  });
  return peer;
}

const result = (i: number): LinkResult & { type: "result" } => ({
  type: "result",
  jobId: `msg-${i}.1`,
  messageId: `msg-${i}`,
  attempt: 1,
  recipients: [{ recipient: `r${i}@example.net`, status: "delivered", smtpCode: 250, response: "250 OK" }],
});

async function until(what: string, ok: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let peer: Peer | null = null;
let link: EdgeLink | null = null;
afterEach(async () => {
  link?.close();
  await peer?.close();
  link = null;
  peer = null;
});

function connect(p: Peer, acked: string[][]): EdgeLink {
  const l = new EdgeLink({
    edgeUrl: p.url,
    token: "t",
    shard: 0,
    nodeId: "node-results",
    bootId: randomUUID(),
    version: "test",
    freeCapacity: () => 0,
    onJobs: () => {},
    onResultAck: (ids) => acked.push(ids),
    log: () => {},
  });
  l.start();
  return l;
}

describe("EdgeLink results", () => {
  it("coalesces the results finished together into one results frame, and replays only unacknowledged ones, one frame each before the hello", async () => {
    peer = await scriptedHub();
    const acked: string[][] = [];
    link = connect(peer, acked);
    await until("the welcome", () => link!.connected);
    const first = peer.connections[0]!;

    // Five jobs finish together (within RESULT_COALESCE_MS): one frame.
    const writesBefore = link.framesOut;
    for (let i = 0; i < 5; i++) link.sendResult(result(i));
    await until("the results frame", () => first.frames.some((f) => f.type === "results"));
    expect(link.framesOut - writesBefore).toBe(1);
    const frame = first.frames.find((f) => f.type === "results") as unknown as { results: LinkResult[] };
    expect(frame.results.map((r) => r.jobId)).toEqual([0, 1, 2, 3, 4].map((i) => `msg-${i}.1`));
    expect(frame.results[0]).toEqual((({ type: _t, ...r }) => r)(result(0)));

    // The hub acknowledges three; the link drops before it acknowledges the other two.
    first.ws.send(JSON.stringify({ type: "resultAck", jobIds: ["msg-0.1", "msg-1.1", "msg-2.1"] }));
    await until("the acknowledgement", () => link!.unackedResults === 2);
    first.ws.terminate();
    await until("the reconnect", () => peer!.connections.length === 2 && link!.connected, 5000);
    const second = peer.connections[1]!;
    const types = second.frames.map((f) => f.type);
    // The two unacknowledged results, each in a frame of its own, ahead of the hello.
    expect(types.slice(0, 3)).toEqual(["result", "result", "hello"]);
    expect(second.frames.slice(0, 2).map((f) => f.jobId)).toEqual(["msg-3.1", "msg-4.1"]);
    expect(acked).toEqual([["msg-0.1", "msg-1.1", "msg-2.1"]]);
  });

  it("splits a tick's results into frames of at most MAX_RESULTS_PER_FRAME", async () => {
    peer = await scriptedHub();
    link = connect(peer, []);
    await until("the welcome", () => link!.connected);
    const n = MAX_RESULTS_PER_FRAME + 20;
    for (let i = 0; i < n; i++) link.sendResult(result(i));
    const conn = peer.connections[0]!;
    const frames = () =>
      conn.frames.filter((f) => f.type === "results") as unknown as { results: unknown[] }[];
    await until("every result", () => frames().reduce((a, f) => a + f.results.length, 0) === n);
    expect(frames().map((f) => f.results.length)).toEqual([MAX_RESULTS_PER_FRAME, 20]);
  });
});
