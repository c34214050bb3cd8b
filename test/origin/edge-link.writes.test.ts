/**
 * EdgeLink's socket writes (origin/src/link/edge-link.ts, `corkUntilIdle` and the header): no
 * permessage-deflate is offered (docs/link-protocol.md#connecting); the
 * credits granted while results wait for their frame go out with them, and every frame written in
 * one turn of the event loop leaves in one socket write. The peer is a loopback WebSocket server
 * that records the frames; the writes are counted on the link's own net.Socket (`_write` /
 * `_writev` are where Node hands bytes to the kernel, one system call each).
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { LINK_PROTOCOL_VERSION, type LinkResult } from "../../shared/link/protocol.ts";

type Frame = { type: string; [k: string]: unknown };

async function recordingHub() {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const frames: Frame[] = [];
  server.on("connection", (ws) => {
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      frames.push(frame);
      if (frame.type === "hello")
        ws.send(
          JSON.stringify({
            type: "welcome",
            protocol: LINK_PROTOCOL_VERSION,
            shard: 0,
            shards: 1,
            leaseMs: 300_000,
          }),
        );
    });
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    frames,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of server.clients) c.terminate();
        server.close(() => resolve());
      }),
  };
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

/** Counts the system-call-level writes of the link's socket from now on. */
function countWrites(link: EdgeLink): () => number {
  const socket = (link as unknown as { ws: { _socket: Socket } }).ws._socket as Socket & {
    _write: (...a: unknown[]) => void;
    _writev: (...a: unknown[]) => void;
  };
  let n = 0;
  const write = socket._write.bind(socket);
  const writev = socket._writev.bind(socket);
  socket._write = (...a: unknown[]) => {
    n++;
    write(...a);
  };
  socket._writev = (...a: unknown[]) => {
    n++;
    writev(...a);
  };
  return () => n;
}

let hub: Awaited<ReturnType<typeof recordingHub>> | null = null;
let link: EdgeLink | null = null;
afterEach(async () => {
  link?.close();
  await hub?.close();
  link = null;
  hub = null;
});

describe("EdgeLink compression", () => {
  it("does not offer permessage-deflate, so a hub that would accept it sends and takes plain frames", async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: true });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    const offered: (string | undefined)[] = [];
    server.on("connection", (ws, req) => {
      offered.push(req.headers["sec-websocket-extensions"]);
      ws.on("message", (data) => {
        if ((JSON.parse(String(data)) as Frame).type === "hello")
          ws.send(
            JSON.stringify({
              type: "welcome",
              protocol: LINK_PROTOCOL_VERSION,
              shard: 0,
              shards: 1,
              leaseMs: 300_000,
            }),
          );
      });
    });
    const l = new EdgeLink({
      edgeUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      token: "t",
      shard: 0,
      nodeId: "node-plain",
      bootId: randomUUID(),
      version: "test",
      freeCapacity: () => 0,
      onJobs: () => {},
      log: () => {},
    });
    try {
      l.start();
      await until("the welcome", () => l.connected);
      expect(offered).toEqual([undefined]);
      expect((l as unknown as { ws: { extensions: string } }).ws.extensions).toBe("");
    } finally {
      l.close();
      for (const c of server.clients) c.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("EdgeLink socket writes", () => {
  it("sends the credits granted while results wait together with them, in one socket write", async () => {
    hub = await recordingHub();
    link = new EdgeLink({
      edgeUrl: hub.url,
      token: "t",
      shard: 0,
      nodeId: "node-writes",
      bootId: randomUUID(),
      version: "test",
      freeCapacity: () => 0,
      onJobs: () => {},
      log: () => {},
    });
    link.start();
    await until("the welcome", () => link!.connected);
    const writes = countWrites(link);
    const before = hub.frames.length;

    // Jobs finish and free their room, as the job runner does it: result first, then the credit.
    for (let i = 0; i < 3; i++) {
      link.sendResult(result(i));
      link.grantCredits(1);
    }
    await until("results and credit", () => hub!.frames.length >= before + 2);
    await new Promise((r) => setTimeout(r, 30));
    const sent = hub.frames.slice(before);
    expect(sent.map((f) => f.type)).toEqual(["results", "credit"]);
    expect((sent[0] as unknown as { results: unknown[] }).results).toHaveLength(3);
    expect(sent[1]).toMatchObject({ type: "credit", credits: 3 });
    expect(writes()).toBe(1);

    // A credit with no result waiting still goes out on its own, shortly.
    link.grantCredits(2);
    await until("the lone credit", () => hub!.frames.length >= before + 3);
    expect(hub.frames.at(-1)).toMatchObject({ type: "credit", credits: 2 });
    expect(writes()).toBe(2);
  });

  it("writes every frame of one event-loop turn in one socket write, in order", async () => {
    hub = await recordingHub();
    link = new EdgeLink({
      edgeUrl: hub.url,
      token: "t",
      shard: 0,
      nodeId: "node-writes-2",
      bootId: randomUUID(),
      version: "test",
      freeCapacity: () => 0,
      onJobs: () => {},
      log: () => {},
    });
    link.start();
    await until("the welcome", () => link!.connected);
    const writes = countWrites(link);
    const before = hub.frames.length;
    expect(link.take(["a.1"])).toEqual(["a.1"]);
    expect(link.take(["b.1", "c.1"])).toEqual(["b.1", "c.1"]);
    link.release(["d.1"]);
    await until("three frames", () => hub!.frames.length >= before + 3);
    expect(hub.frames.slice(before)).toEqual([
      { type: "ack", jobIds: ["a.1"] },
      { type: "ack", jobIds: ["b.1", "c.1"] },
      { type: "release", jobIds: ["d.1"] },
    ]);
    expect(writes()).toBe(1);
  });
});
