/**
 * The origin's side of the message lifecycle (docs/link-protocol.md#stages): the delivery engine
 * reports `rendered` once the MIME is built and signed and `sending` when SMTP delivery starts
 * (origin/src/delivery/engine.ts, a real engine delivering through a loopback DNS server to a
 * loopback SMTP sink), and the EdgeLink tells the hub on its next lease renewal only — never in a
 * frame of its own — for jobs it still holds, each stage once (the peer is a loopback WebSocket
 * server that records the frames).
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { createMemoryCoordinator } from "../../origin/src/coord/index.ts";
import { createDeliveryEngine } from "../../origin/src/delivery/engine.ts";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { LINK_PROTOCOL_VERSION, type DeliveryJob } from "../../shared/link/protocol.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSinkServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

type Frame = { type: string; [k: string]: unknown };

let dns: TestDnsServer;
let mx: TestSmtpServer;
beforeAll(async () => {
  dns = await startDnsServer({
    records: {
      "dest.test": { MX: [{ preference: 10, exchange: "mx.dest.test" }] },
      "mx.dest.test": { A: ["127.0.0.1"] },
    },
  });
  mx = await startSinkServer();
});
afterAll(async () => {
  await mx?.close();
  await dns?.close();
});

const job = (recipients: string[]): DeliveryJob => ({
  jobId: "msg_stage.1",
  messageId: "msg_stage",
  tenantId: "t_1",
  attempt: 1,
  recipients,
  message: {
    from: { email: "news@sender.test" },
    to: recipients.map((email) => ({ email })),
    subject: "Stages",
    text: "Hello",
    headers: {},
    messageIdHeader: "msg_stage@sender.test",
  },
  dkim: null,
});

describe("the delivery engine's stages", () => {
  it("rendered after the build, sending before SMTP, then the outcome; a build failure reports neither", async () => {
    const engine = createDeliveryEngine({
      heloName: "node.sender.test",
      smtpPort: mx.port,
      dnsServers: [dns.server],
      verpSecret: "verp-secret-for-tests",
      connectTimeoutMs: 2_000,
      maxConnectionsPerHost: 2,
      coordinator: createMemoryCoordinator(),
      hostSlotTtlMs: 5_000,
      allowPrivateMx: true,
    });
    try {
      const seen: string[] = [];
      const delivered = mx.messages.length;
      const outcomes = await engine.deliver(job(["alice@dest.test"]), {
        onStage: (s) => seen.push(`${s}@${mx.messages.length - delivered}`),
      });
      expect(outcomes.map((o) => o.status)).toEqual(["delivered"]);
      // Both before the sink had the message.
      expect(seen).toEqual(["rendered@0", "sending@0"]);

      const broken = job(["bob@dest.test"]);
      broken.message.messageIdHeader = "no-at-sign";
      const stages: string[] = [];
      const failed = await engine.deliver(broken, { onStage: (s) => stages.push(s) });
      expect(failed.map((o) => o.status)).toEqual(["failed"]);
      expect(stages).toEqual([]);
    } finally {
      await engine.close();
    }
  });
});

async function recordingHub(leaseMs: number) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const frames: Frame[] = [];
  server.on("connection", (ws) => {
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      frames.push(frame);
      if (frame.type === "hello")
        ws.send(
          JSON.stringify({ type: "welcome", protocol: LINK_PROTOCOL_VERSION, shard: 0, shards: 1, leaseMs }),
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

async function until(what: string, ok: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let hub: Awaited<ReturnType<typeof recordingHub>> | null = null;
let link: EdgeLink | null = null;
afterEach(async () => {
  link?.close();
  await hub?.close();
  link = null;
  hub = null;
});

describe("EdgeLink stages", () => {
  it("rides the next renewal for held jobs only, each once, sending over rendered; no frame of its own", async () => {
    // A 500 ms lease: renewals every 100 ms.
    hub = await recordingHub(500);
    link = new EdgeLink({
      edgeUrl: hub.url,
      token: "t",
      shard: 0,
      nodeId: "node-stages",
      bootId: randomUUID(),
      version: "test",
      freeCapacity: () => 0,
      onJobs: () => {},
      log: () => {},
    });
    link.start();
    await until("the welcome", () => link!.connected);
    expect(link.take(["a.1", "b.1", "c.1"])).toEqual(["a.1", "b.1", "c.1"]);
    const acks = () => hub!.frames.filter((f) => f.type === "ack");
    await until("the take's ack", () => acks().length === 1);
    const framesBefore = hub.frames.length;
    link.noteStage("a.1", "rendered");
    link.noteStage("b.1", "sending");
    link.noteStage("b.1", "rendered"); // never back
    link.noteStage("x.1", "sending"); // not held here
    // Nothing is written for the stages themselves.
    await new Promise((r) => setTimeout(r, 20));
    expect(hub.frames.length).toBe(framesBefore);
    await until("a renewal", () => acks().length >= 2);
    const renewal = acks()[1]!;
    expect(renewal.stages).toEqual({ rendered: ["a.1"], sending: ["b.1"] });
    expect((renewal.jobIds as string[]).sort()).toEqual(["a.1", "b.1", "c.1"]);
    // Once only: the next renewal carries none.
    await until("another renewal", () => acks().length >= 3);
    expect(acks()[2]!.stages).toBeUndefined();
    // A job whose result went out is not reported any more.
    link.noteStage("c.1", "rendered");
    link.sendResult({
      type: "result",
      jobId: "c.1",
      messageId: "c",
      attempt: 1,
      recipients: [{ recipient: "r@dest.test", status: "delivered", response: "250 OK" }],
    });
    const seen = acks().length;
    await until("a renewal after the result", () => acks().length >= seen + 2);
    expect(
      acks()
        .slice(seen)
        .some((f) => f.stages !== undefined),
    ).toBe(false);
  });
});
