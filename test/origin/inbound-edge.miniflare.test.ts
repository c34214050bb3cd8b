/**
 * Bounces and complaints end to end (docs/bounces.md): a message sent through the API is delivered by
 * a real origin node (startOriginNode: links, runner, engine, inbound SMTP server) to a sink on
 * loopback; a DSN built from what the sink received (its VERP envelope sender, its headers) is sent
 * with nodemailer to the node's inbound server; the Worker in workerd (Miniflare, as
 * edge-link.miniflare.test.ts runs it) records it, and it appears on GET /v3/messages/{id}.
 *
 * The inbound server answers DATA with 250 only after the edge acknowledged the events, so the API
 * shows them as soon as sendMail resolves: no polling for the positive checks.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { InboundForwarder } from "../../origin/src/inbound/forwarder.ts";
import { startInboundServer } from "../../origin/src/inbound/server.ts";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";
import { startOriginNode, type OriginNode } from "../../origin/src/node.ts";
import { createLogger } from "../../origin/src/ops/log.ts";
import { freshSecrets, liveSender, testWorkDir } from "../helpers/miniflare-fixture.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSinkServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

const SENDER = "sender.inbound.test";
const BOUNCE_DOMAIN = "bounce.inbound.test";
const FBL = `fbl@${BOUNCE_DOMAIN}`;
const VERP_SECRET = randomBytes(24).toString("hex");
const secrets = freshSecrets();

let edge: MiniflareEdge;
let dns: TestDnsServer;
let sink: TestSmtpServer;
let node: OriginNode;
let workDir: string;
let apiKey: string;
const quiet = createLogger("error");

beforeAll(async () => {
  workDir = testWorkDir("inbound-miniflare");
  dns = await startDnsServer({});
  edge = await startMiniflareEdge({
    persistDir: path.join(workDir, "edge"),
    vars: { ...secrets, DEV_MODE: "true", DNS_RESOLVER_URL: dns.dohUrl },
  });
  apiKey = (await liveSender(edge.url, secrets, "Inbound", SENDER)).apiKey;
  sink = await startSinkServer();
  node = await startOriginNode(
    loadOriginConfig({
      EDGE_URL: edge.url,
      ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
      VERP_SECRET,
      NODE_ID: "inbound-node",
      SMARTHOST: `127.0.0.1:${sink.port}`,
      RETURN_PATH_DOMAIN: BOUNCE_DOMAIN,
      HTTP_PORT: "0",
      INBOUND_SMTP_PORT: "0",
      INBOUND_SMTP_HOST: "127.0.0.1",
      INBOUND_FBL_ADDRESSES: FBL,
      INBOUND_MAX_MESSAGE_BYTES: String(64 * 1024),
      COMPOSE_THREADS: "0",
    }),
    quiet,
  );
  expect(node.inbound).not.toBeNull();
}, 180_000);

afterAll(async () => {
  await node?.drain();
  await sink?.close();
  await edge?.stop();
  await dns?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

async function api(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(new URL(pathname, edge.url), {
    method,
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Sends one message to `to` and waits until the sink has it; returns its id and what the sink saw. */
async function deliverOne(to: string[]): Promise<{ id: string; mailFrom: string; headers: string }> {
  const res = await api("POST", "/v3/mail/send", {
    personalizations: [{ to: to.map((email) => ({ email })) }],
    from: { email: `app@${SENDER}` },
    subject: "Inbound test",
    content: [{ type: "text/plain", value: "Hello" }],
  });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const id: string = res.body.message_ids?.[0] ?? res.body.message_id;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = sink.messages.find(
      (x) => x.rcptTo.includes(to[0]!) && x.raw.toString("utf8").includes("Inbound test"),
    );
    const view = await api("GET", `/v3/messages/${id}`);
    if (m && view.body?.status === "delivered") {
      const raw = m.raw.toString("utf8");
      return { id, mailFrom: m.mailFrom, headers: raw.slice(0, raw.search(/\r?\n\r?\n/)) };
    }
    if (Date.now() > deadline) throw new Error(`message ${id} not delivered: ${JSON.stringify(view.body)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function dsn(o: {
  to: string;
  recipient: string;
  status: string;
  diag: string;
  original: string;
  id?: string;
}) {
  const boundary = "dsn-boundary-1";
  return [
    `From: MAILER-DAEMON@mx.remote.test (Mail Delivery System)`,
    `To: ${o.to}`,
    `Subject: Undelivered Mail Returned to Sender`,
    `Message-ID: <${o.id ?? randomBytes(8).toString("hex")}@mx.remote.test>`,
    `Auto-Submitted: auto-replied`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    ``,
    `--${boundary}`,
    `Content-Type: text/plain`,
    ``,
    `Your message could not be delivered.`,
    ``,
    `--${boundary}`,
    `Content-Type: message/delivery-status`,
    ``,
    `Reporting-MTA: dns; mx.remote.test`,
    ``,
    `Final-Recipient: rfc822; ${o.recipient}`,
    `Action: failed`,
    `Status: ${o.status}`,
    `Diagnostic-Code: smtp; ${o.diag}`,
    ``,
    `--${boundary}`,
    `Content-Type: text/rfc822-headers`,
    ``,
    o.original,
    ``,
    `--${boundary}--`,
    ``,
  ].join("\r\n");
}

function transport(port = node.inbound!.port) {
  return nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ignoreTLS: true, pool: false });
}

async function sendRaw(envelope: { from: string; to: string[] }, raw: string, port?: number) {
  const t = transport(port);
  try {
    return await t.sendMail({ envelope, raw });
  } finally {
    t.close();
  }
}

/** The inbound events of one type on a message's timeline, flattened: recipient + metadata. */
const inboundEvents = (view: any, type: string) =>
  (view.events as any[])
    .filter((e) => e.event_type === type && e.metadata?.source === "inbound")
    .map((e) => ({ recipient: e.recipient_email, ...e.metadata }));

describe("inbound bounces and complaints, through a real edge", () => {
  it("records a DSN sent to the VERP address as a bounce on the message's timeline, once however often it comes", async () => {
    const sent = await deliverOne(["alice@remote.test"]);
    expect(sent.mailFrom).toMatch(new RegExp(`^bounces\\+${sent.id}\\.[a-z2-7]{10}@${BOUNCE_DOMAIN}$`));
    const raw = dsn({
      to: sent.mailFrom,
      recipient: "alice@remote.test",
      status: "5.1.1",
      diag: "550 5.1.1 <alice@remote.test>: Recipient address rejected: User unknown",
      original: sent.headers,
      id: "dsn-once",
    });
    const info = await sendRaw({ from: "", to: [sent.mailFrom] }, raw);
    expect(info.response).toMatch(/^250 .*Recorded 1 event/);

    const view = (await api("GET", `/v3/messages/${sent.id}`)).body;
    const bounces = inboundEvents(view, "bounce");
    expect(bounces).toHaveLength(1);
    expect(bounces[0]).toMatchObject({
      recipient: "alice@remote.test",
      bounce_type: "hard",
      bounce_reason: "user_unknown",
      status: "5.1.1",
      message_id_source: "verp",
    });
    expect(bounces[0].reason).toContain("User unknown");

    // The sending MTA retries the same report (same Message-ID): recorded once.
    await sendRaw({ from: "", to: [sent.mailFrom] }, raw);
    const again = (await api("GET", `/v3/messages/${sent.id}`)).body;
    expect(inboundEvents(again, "bounce")).toHaveLength(1);
  }, 60_000);

  it("records an ARF complaint to the FBL address as a spam_report", async () => {
    const sent = await deliverOne(["bob@remote.test"]);
    const b = "arf-boundary";
    const raw = [
      `From: feedback@fbl.remote.test`,
      `To: ${FBL}`,
      `Subject: Email Feedback Report`,
      `Message-ID: <arf-1@fbl.remote.test>`,
      `MIME-Version: 1.0`,
      `Content-Type: multipart/report; report-type=feedback-report; boundary="${b}"`,
      ``,
      `--${b}`,
      `Content-Type: text/plain`,
      ``,
      `This is an email abuse report.`,
      ``,
      `--${b}`,
      `Content-Type: message/feedback-report`,
      ``,
      `Feedback-Type: abuse`,
      `User-Agent: RemoteFBL/1.0`,
      `Version: 1`,
      `Original-Mail-From: <${sent.mailFrom}>`,
      `Original-Rcpt-To: <bob@remote.test>`,
      ``,
      `--${b}`,
      `Content-Type: text/rfc822-headers`,
      ``,
      sent.headers,
      ``,
      `--${b}--`,
      ``,
    ].join("\r\n");
    const info = await sendRaw({ from: "feedback@fbl.remote.test", to: [FBL] }, raw);
    expect(info.response).toMatch(/^250 /);
    const view = (await api("GET", `/v3/messages/${sent.id}`)).body;
    expect(inboundEvents(view, "spam_report")).toEqual([
      expect.objectContaining({
        recipient: "bob@remote.test",
        feedback_type: "abuse",
        message_id_source: "verp",
      }),
    ]);
  }, 60_000);

  it("falls back to the returned Message-ID, and records nothing when it is not the message's own", async () => {
    const sent = await deliverOne(["carol@remote.test"]);
    const plain = `bounces@${BOUNCE_DOMAIN}`;
    const good = dsn({
      to: plain,
      recipient: "carol@remote.test",
      status: "5.2.2",
      diag: "552 5.2.2 Mailbox full",
      original: sent.headers.replace(/^Return-Path:.*\r?\n/im, ""),
    });
    await sendRaw({ from: "", to: [plain] }, good);
    let view = (await api("GET", `/v3/messages/${sent.id}`)).body;
    expect(inboundEvents(view, "bounce")).toEqual([
      expect.objectContaining({
        bounce_type: "soft",
        bounce_reason: "mailbox_full",
        message_id_source: "message-id",
      }),
    ]);
    // Same id body under another domain: the edge compares the whole header and records nothing.
    const forged = dsn({
      to: plain,
      recipient: "carol@remote.test",
      status: "5.1.1",
      diag: "550 5.1.1 User unknown",
      original: sent.headers
        .replace(/^Return-Path:.*\r?\n/im, "")
        .replace(/^(Message-ID: <[^@]+)@[^>]+>/im, "$1@evil.test>"),
    });
    const info = await sendRaw({ from: "", to: [plain] }, forged);
    expect(info.response).toMatch(/^250 /); // acknowledged: nothing to re-send
    view = (await api("GET", `/v3/messages/${sent.id}`)).body;
    expect(inboundEvents(view, "bounce")).toHaveLength(1);
  }, 60_000);

  it("refuses forged VERP tokens and other domains at RCPT, and messages over the size limit", async () => {
    const sent = await deliverOne(["dave@remote.test"]);
    const forgedAddress = sent.mailFrom.replace(/\.[a-z2-7]{10}@/, ".aaaaaaaaaa@");
    const body = dsn({
      to: forgedAddress,
      recipient: "dave@remote.test",
      status: "5.1.1",
      diag: "550 5.1.1 x",
      original: "",
    });
    await expect(sendRaw({ from: "", to: [forgedAddress] }, body)).rejects.toMatchObject({
      responseCode: 550,
    });
    await expect(sendRaw({ from: "", to: ["someone@elsewhere.test"] }, body)).rejects.toMatchObject({
      responseCode: 550,
    });
    const big = `${body}\r\n${"x".repeat(70 * 1024)}\r\n`;
    await expect(sendRaw({ from: "", to: [sent.mailFrom] }, big)).rejects.toMatchObject({
      responseCode: 552,
    });
    const view = (await api("GET", `/v3/messages/${sent.id}`)).body;
    expect(inboundEvents(view, "bounce")).toHaveLength(0);
  }, 60_000);

  it("accepts and drops an auto-reply", async () => {
    const sent = await deliverOne(["erin@remote.test"]);
    const raw = [
      `From: erin@remote.test`,
      `To: ${sent.mailFrom}`,
      `Subject: Automatic reply: Inbound test`,
      `Auto-Submitted: auto-replied`,
      ``,
      `I am away.`,
      ``,
    ].join("\r\n");
    const info = await sendRaw({ from: "erin@remote.test", to: [sent.mailFrom] }, raw);
    expect(info.response).toMatch(/nothing to record \(auto_reply\)/);
    const view = (await api("GET", `/v3/messages/${sent.id}`)).body;
    expect(view.events.filter((e: any) => e.metadata?.source === "inbound")).toHaveLength(0);
  }, 60_000);
});

describe("inbound server limits and the link", () => {
  it("answers 451 while the edge is unreachable, keeps the events, and records them once the link is up", async () => {
    const sent = await deliverOne(["frank@remote.test"]);
    // A link that is not started yet stands for an edge that cannot be reached.
    const link = new EdgeLink({
      edgeUrl: edge.url,
      token: secrets.ORIGIN_TOKEN,
      shard: 0,
      nodeId: "inbound-offline",
      bootId: randomBytes(8).toString("hex"),
      version: "test",
      freeCapacity: () => 0,
      onJobs: (jobs, l) => l.release(jobs.map((j) => j.jobId)),
      onWelcome: () => forwarder.linkUp(),
      onInboundAck: (keys) => forwarder.acknowledge(keys),
      log: () => {},
    });
    const forwarder = new InboundForwarder({ links: () => [link], maxPending: 10 });
    const server = await startInboundServer({
      host: "127.0.0.1",
      port: 0,
      hostname: "inbound.test",
      domains: [BOUNCE_DOMAIN],
      fblAddresses: [],
      verp: { secret: VERP_SECRET },
      forwarder,
      maxMessageBytes: 1024 * 1024,
      maxConnectionsPerIp: 10,
      connectionsPerMinute: 100,
      maxMessagesPerConnection: 10,
      ackTimeoutMs: 300,
      log: () => {},
    });
    try {
      const raw = dsn({
        to: sent.mailFrom,
        recipient: "frank@remote.test",
        status: "5.7.1",
        diag: "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
        original: sent.headers,
      });
      await expect(sendRaw({ from: "", to: [sent.mailFrom] }, raw, server.port)).rejects.toMatchObject({
        responseCode: 451,
      });
      expect(forwarder.size).toBe(1);
      link.start();
      const deadline = Date.now() + 20_000;
      while (forwarder.acknowledged < 1) {
        if (Date.now() > deadline) throw new Error("the queued event was never acknowledged");
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(forwarder.size).toBe(0);
      // The sender's retry of the same report is recorded once.
      const info = await sendRaw({ from: "", to: [sent.mailFrom] }, raw, server.port);
      expect(info.response).toMatch(/^250 /);
      const view = (await api("GET", `/v3/messages/${sent.id}`)).body;
      expect(inboundEvents(view, "bounce")).toEqual([
        expect.objectContaining({ bounce_type: "block", bounce_reason: "spam_block", status: "5.7.1" }),
      ]);
    } finally {
      await server.close();
      forwarder.close();
      link.close();
    }
  }, 60_000);

  it("does not acknowledge while D1 fails; the forwarder re-sends, and the event is recorded once", async () => {
    const sent = await deliverOne(["grace@remote.test"]);
    const link: EdgeLink = new EdgeLink({
      edgeUrl: edge.url,
      token: secrets.ORIGIN_TOKEN,
      shard: 0,
      nodeId: "inbound-d1",
      bootId: randomBytes(8).toString("hex"),
      version: "test",
      freeCapacity: () => 0,
      onJobs: (jobs, l) => l.release(jobs.map((j) => j.jobId)),
      onWelcome: () => forwarder.linkUp(),
      onInboundAck: (keys) => forwarder.acknowledge(keys),
      log: () => {},
    });
    const forwarder = new InboundForwarder({ links: () => [link], maxPending: 10, resendIntervalMs: 200 });
    forwarder.start();
    link.start();
    const server = await startInboundServer({
      host: "127.0.0.1",
      port: 0,
      hostname: "inbound.test",
      domains: [BOUNCE_DOMAIN],
      fblAddresses: [],
      verp: { secret: VERP_SECRET },
      forwarder,
      maxMessageBytes: 1024 * 1024,
      maxConnectionsPerIp: 10,
      connectionsPerMinute: 100,
      maxMessagesPerConnection: 10,
      ackTimeoutMs: 1_000,
      log: () => {},
    });
    const HELD = "events_held_by_inbound_test";
    const d1 = await edge.d1();
    let broken = false;
    try {
      const deadline = Date.now() + 20_000;
      while (!link.connected) {
        if (Date.now() > deadline) throw new Error("link never came up");
        await new Promise((r) => setTimeout(r, 50));
      }
      await d1.prepare(`ALTER TABLE events RENAME TO ${HELD}`).run();
      broken = true;
      const raw = dsn({
        to: sent.mailFrom,
        recipient: "grace@remote.test",
        status: "5.1.1",
        diag: "550 5.1.1 User unknown",
        original: sent.headers,
        id: "dsn-d1",
      });
      await expect(sendRaw({ from: "", to: [sent.mailFrom] }, raw, server.port)).rejects.toMatchObject({
        responseCode: 451,
      });
      expect(forwarder.size).toBe(1);
      expect(forwarder.acknowledged).toBe(0);
      await d1.prepare(`ALTER TABLE ${HELD} RENAME TO events`).run();
      broken = false;
      while (forwarder.acknowledged < 1) {
        if (Date.now() > deadline) throw new Error("the re-sent event was never acknowledged");
        await new Promise((r) => setTimeout(r, 50));
      }
      await sendRaw({ from: "", to: [sent.mailFrom] }, raw, server.port);
      const view = (await api("GET", `/v3/messages/${sent.id}`)).body;
      expect(inboundEvents(view, "bounce")).toHaveLength(1);
    } finally {
      if (broken) await d1.prepare(`ALTER TABLE ${HELD} RENAME TO events`).run();
      await server.close();
      forwarder.close();
      link.close();
    }
  }, 60_000);

  it("refuses a client IP past its connections per minute, and new reports when the queue is full", async () => {
    const forwarder = new InboundForwarder({ links: () => [], maxPending: 1 });
    const server = await startInboundServer({
      host: "127.0.0.1",
      port: 0,
      hostname: "inbound.test",
      domains: [BOUNCE_DOMAIN],
      fblAddresses: [],
      verp: { secret: VERP_SECRET },
      forwarder,
      maxMessageBytes: 1024 * 1024,
      maxConnectionsPerIp: 10,
      connectionsPerMinute: 2,
      maxMessagesPerConnection: 10,
      ackTimeoutMs: 200,
      log: () => {},
    });
    try {
      const to = [`bounces@${BOUNCE_DOMAIN}`];
      const report = (n: number) =>
        dsn({
          to: to[0]!,
          recipient: "x@remote.test",
          status: "5.1.1",
          diag: "550 5.1.1 unknown",
          original: `Message-ID: <01jdq3x8w5k7m2n4p6r8t0v2x${n}@${SENDER}>`,
        });
      // 1st connection: queued (no link), 451; 2nd: the queue is full, 452 before DATA.
      await expect(sendRaw({ from: "", to }, report(1), server.port)).rejects.toMatchObject({
        responseCode: 451,
      });
      await expect(sendRaw({ from: "", to }, report(2), server.port)).rejects.toMatchObject({
        responseCode: 452,
      });
      // 3rd connection this minute from 127.0.0.1: refused at the greeting.
      await expect(sendRaw({ from: "", to }, report(3), server.port)).rejects.toMatchObject({
        responseCode: 421,
      });
    } finally {
      await server.close();
      forwarder.close();
    }
  }, 30_000);
});
