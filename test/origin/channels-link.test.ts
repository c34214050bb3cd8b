/**
 * A channel job end to end through a running origin node (origin/src/node.ts): a scripted hub on a
 * loopback WebSocket server answers the node's hello (protocol 6) with a welcome and a `jobs` frame
 * whose `channelJobs` carry an SMS job (Twilio, a loopback fake) and a web push job (a push service
 * that 410s); the node acknowledges them, runs them with the channel adapters, and each outcome comes
 * back in a result frame, with `providerMessageId` and `gone` (docs/link-protocol.md#channel-jobs).
 */
import { randomBytes, createECDH } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import webpush from "web-push";
import { afterAll, beforeAll, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { startOriginNode, type OriginNode } from "../../origin/src/node.ts";
import { createLogger } from "../../origin/src/ops/log.ts";
import { LINK_PROTOCOL_VERSION, type ChannelJob, type LinkResult } from "../../shared/link/protocol.ts";
import { startFakeHttp, type FakeServer } from "../helpers/channel-fakes.ts";

type Frame = { type: string; [k: string]: unknown };

let hub: WebSocketServer;
let hubUrl: string;
const frames: Frame[] = [];
let twilio: FakeServer;
let pushService: FakeServer;
let node: OriginNode | undefined;
let journalDir: string;
let hubSocket: WebSocket | undefined;

const ua = createECDH("prime256v1");
ua.generateKeys();
const vapid = webpush.generateVAPIDKeys();

function channelJobs(): ChannelJob[] {
  return [
    {
      jobId: "msg_link_sms.1",
      messageId: "msg_link_sms",
      tenantId: "t1",
      attempt: 1,
      recipients: ["+14155550123"],
      channel: "sms",
      target: { to: "+14155550123" },
      content: { body: "hello over the link" },
      provider: { kind: "twilio", accountSid: "AC1", authToken: "tok", from: "+15005550006" },
    },
    {
      jobId: "msg_link_wp.1",
      messageId: "msg_link_wp",
      tenantId: "t1",
      attempt: 1,
      recipients: ["sub-1"],
      channel: "web-push",
      target: {
        subscription: {
          endpoint: `${pushService.url}/push/expired`,
          keys: {
            p256dh: ua.getPublicKey().toString("base64url"),
            auth: randomBytes(16).toString("base64url"),
          },
        },
      },
      content: { title: "t", body: "b" },
      provider: {
        kind: "vapid",
        subject: "mailto:ops@acme.example",
        publicKey: vapid.publicKey,
        privateKey: vapid.privateKey,
      },
    },
  ];
}

beforeAll(async () => {
  twilio = await startFakeHttp(() => ({ status: 201, body: { sid: "SMlink0001", status: "queued" } }));
  pushService = await startFakeHttp(() => ({
    status: 410,
    body: "push subscription has unsubscribed or expired.",
  }));
  hub = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => hub.once("listening", () => resolve()));
  hubUrl = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
  hub.on("connection", (ws: WebSocket) => {
    hubSocket = ws;
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      frames.push(frame);
      if (frame.type === "hello") {
        ws.send(
          JSON.stringify({
            type: "welcome",
            protocol: LINK_PROTOCOL_VERSION,
            shard: 0,
            shards: 1,
            leaseMs: 60_000,
          }),
        );
        ws.send(JSON.stringify({ type: "jobs", jobs: [], channelJobs: channelJobs() }));
      }
      const results =
        frame.type === "result"
          ? [frame as unknown as LinkResult]
          : frame.type === "results"
            ? (frame.results as LinkResult[])
            : [];
      if (results.length > 0)
        ws.send(JSON.stringify({ type: "resultAck", jobIds: results.map((r) => r.jobId) }));
    });
  });
  journalDir = mkdtempSync(path.join(tmpdir(), "scaisend-channels-link-"));
});

afterAll(async () => {
  await node?.drain();
  for (const c of hub.clients) c.terminate();
  await new Promise<void>((r) => hub.close(() => r()));
  await twilio.close();
  await pushService.close();
  rmSync(journalDir, { recursive: true, force: true });
});

it("runs channel jobs from a jobs frame and reports their outcomes in result frames", async () => {
  node = await startOriginNode(
    loadOriginConfig({
      EDGE_URL: hubUrl,
      ORIGIN_TOKEN: randomBytes(24).toString("hex"),
      VERP_SECRET: randomBytes(24).toString("hex"),
      NODE_ID: "channels-link-node",
      HTTP_PORT: "0",
      COMPOSE_THREADS: "0",
      JOURNAL_DIR: journalDir,
      CHANNEL_TWILIO_API_URL: twilio.url,
      CHANNEL_ALLOW_PRIVATE: "1",
    }),
    createLogger("error"),
  );
  const collected = () =>
    frames.flatMap((f) =>
      f.type === "result"
        ? [f as unknown as LinkResult]
        : f.type === "results"
          ? (f.results as LinkResult[])
          : [],
    );
  const deadline = Date.now() + 15_000;
  while (collected().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));

  const hello = frames.find((f) => f.type === "hello");
  expect(hello?.protocol).toBe(6);
  const acked = frames.filter((f) => f.type === "ack").flatMap((f) => f.jobIds as string[]);
  expect(acked).toEqual(expect.arrayContaining(["msg_link_sms.1", "msg_link_wp.1"]));

  const byJob = new Map(collected().map((r) => [r.jobId, r]));
  expect(byJob.get("msg_link_sms.1")).toMatchObject({
    messageId: "msg_link_sms",
    attempt: 1,
    recipients: [{ recipient: "+14155550123", status: "delivered", providerMessageId: "SMlink0001" }],
  });
  expect(byJob.get("msg_link_wp.1")).toMatchObject({
    messageId: "msg_link_wp",
    recipients: [{ recipient: "sub-1", status: "bounced", bounceType: "hard", gone: true }],
  });
  // What the fake Twilio got is the job's SMS.
  expect(new URLSearchParams(twilio.requests[0]!.body.toString()).get("Body")).toBe("hello over the link");
  // The acknowledged results left the journal's unacknowledged set.
  const until = Date.now() + 5_000;
  while (node.links[0]!.unackedResults > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  expect(node.links[0]!.unackedResults).toBe(0);
});

it("never sends a channel job twice: a repeated frame and a re-dispatch are answered from what the node knows", async () => {
  const collected = () =>
    frames.flatMap((f) =>
      f.type === "result"
        ? [f as unknown as LinkResult]
        : f.type === "results"
          ? (f.results as LinkResult[])
          : [],
    );
  const sms = channelJobs()[0]!;
  const before = collected().length;
  // The same dispatch again (an at-least-once re-send), then a new dispatch of the same message.
  hubSocket!.send(JSON.stringify({ type: "jobs", jobs: [], channelJobs: [sms] }));
  hubSocket!.send(
    JSON.stringify({
      type: "jobs",
      jobs: [],
      channelJobs: [{ ...sms, jobId: "msg_link_sms.2", attempt: 2 }],
    }),
  );
  const deadline = Date.now() + 10_000;
  while (collected().length < before + 2 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  const again = collected().slice(before);
  expect(again.map((r) => r.jobId).sort()).toEqual(["msg_link_sms.1", "msg_link_sms.2"]);
  for (const r of again)
    expect(r.recipients).toMatchObject([{ status: "delivered", providerMessageId: "SMlink0001" }]);
  expect(twilio.requests.length).toBe(1);
});

it("a link with no channel runner gives channel jobs back at once (release), never holds them", async () => {
  const start = frames.length;
  const link = new EdgeLink({
    edgeUrl: hubUrl,
    token: "t".repeat(32),
    shard: 0,
    nodeId: "no-channels",
    bootId: "boot-no-channels",
    version: "test",
    freeCapacity: () => 10,
    onJobs: () => {},
    log: () => {},
  });
  link.start();
  try {
    const deadline = Date.now() + 5_000;
    while (!frames.slice(start).some((f) => f.type === "release") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const released = frames
      .slice(start)
      .filter((f) => f.type === "release")
      .flatMap((f) => f.jobIds as string[]);
    expect(released.sort()).toEqual(["msg_link_sms.1", "msg_link_wp.1"]);
    expect(frames.slice(start).some((f) => f.type === "ack")).toBe(false);
  } finally {
    link.close();
  }
});
