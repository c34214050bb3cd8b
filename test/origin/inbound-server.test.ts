/**
 * The inbound SMTP server's own rules, on loopback without an edge (the messages here produce no
 * events, so nothing waits for one): STARTTLS only with a configured certificate, no AUTH, the
 * recipients it takes. Recording through a real edge is inbound-edge.miniflare.test.ts.
 */
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import nodemailer from "nodemailer";
import { afterAll, describe, expect, it } from "vitest";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { InboundForwarder } from "../../origin/src/inbound/forwarder.ts";
import { startInboundServer, type InboundServer } from "../../origin/src/inbound/server.ts";
import { createSelfSignedCert } from "../helpers/smtp-servers.ts";

const DOMAIN = "bounce.server.test";
const autoReply = [
  "From: pat@remote.test",
  `To: bounces@${DOMAIN}`,
  "Subject: Out of office",
  "",
  "Away.",
  "",
].join("\r\n");

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "inbound-server-"));
const servers: InboundServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const MINIMAL_ENV = {
  EDGE_URL: "https://edge.example.com",
  ORIGIN_TOKEN: "t".repeat(32),
  VERP_SECRET: "v".repeat(32),
};

async function start(
  tls?: { keyFile: string; certFile: string },
  extra: Pick<Parameters<typeof startInboundServer>[0], "idleTimeoutMs" | "onMessage"> = {},
): Promise<InboundServer> {
  const s = await startInboundServer({
    host: "127.0.0.1",
    port: 0,
    hostname: "inbound.test",
    domains: [DOMAIN],
    fblAddresses: [`fbl@${DOMAIN}`],
    verp: { secret: "server-test-secret-0123456789abcdef" },
    forwarder: new InboundForwarder({ links: () => [], maxPending: 10 }),
    maxMessageBytes: 1024 * 1024,
    maxConnectionsPerIp: 10,
    connectionsPerMinute: 1_000,
    maxMessagesPerConnection: 10,
    ackTimeoutMs: 200,
    ...extra,
    ...(tls ? { tls } : {}),
    log: () => {},
  });
  servers.push(s);
  return s;
}

async function send(port: number, to: string[], extra: Record<string, unknown> = {}) {
  const t = nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ...extra });
  try {
    return await t.sendMail({ envelope: { from: "", to }, raw: autoReply });
  } finally {
    t.close();
  }
}

describe("inbound SMTP server", () => {
  it("offers STARTTLS only with a certificate", async () => {
    const plain = await start();
    await expect(send(plain.port, [`bounces@${DOMAIN}`], { requireTLS: true })).rejects.toThrow(/STARTTLS/);
    const { key, cert } = createSelfSignedCert("inbound.test");
    fs.writeFileSync(path.join(dir, "key.pem"), key);
    fs.writeFileSync(path.join(dir, "cert.pem"), cert);
    const tls = await start({ keyFile: path.join(dir, "key.pem"), certFile: path.join(dir, "cert.pem") });
    const info = await send(tls.port, [`bounces@${DOMAIN}`], {
      requireTLS: true,
      tls: { rejectUnauthorized: false },
    });
    expect(info.response).toMatch(/^250 .*nothing to record \(auto_reply\)/);
    expect(tls.accepted.auto_reply).toBe(1);
  });

  it("reports each message to onMessage (the /metrics counter) with its kind and what was done", async () => {
    const seen: string[] = [];
    // An auto-reply is taken and ignored; a message that does not parse is refused (550).
    const s = await start(undefined, { onMessage: (kind, outcome) => seen.push(`${kind}:${outcome}`) });
    await send(s.port, [`bounces@${DOMAIN}`]);
    const t = nodemailer.createTransport({ host: "127.0.0.1", port: s.port, secure: false });
    try {
      await expect(
        t.sendMail({ envelope: { from: "", to: [`bounces@${DOMAIN}`] }, raw: "not a message at all" }),
      ).rejects.toThrow();
    } finally {
      t.close();
    }
    expect(seen).toEqual(["auto_reply:ignored", "unparseable:refused"]);
  });

  it("offers no AUTH, and refuses the command", async () => {
    const s = await start();
    const socket = net.connect(s.port, "127.0.0.1");
    let buffer = "";
    socket.on("data", (d) => (buffer += d.toString("latin1")));
    const reply = async (pattern: RegExp) => {
      const deadline = Date.now() + 5_000;
      while (!pattern.test(buffer)) {
        if (Date.now() > deadline) throw new Error(`no reply matching ${pattern}: ${buffer}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      const out = buffer;
      buffer = "";
      return out;
    };
    try {
      await reply(/^220 .*\r\n/m);
      socket.write("EHLO client.test\r\n");
      const ehlo = await reply(/^250 .*\r\n/m);
      expect(ehlo).not.toMatch(/AUTH/);
      socket.write("AUTH PLAIN AHUAcA==\r\n");
      expect(await reply(/^\d{3} .*\r\n/m)).toMatch(/^5\d\d /);
    } finally {
      socket.destroy();
    }
  });

  it("closes a silent client with 421 after the idle timeout, and not before it answers a live one", async () => {
    const s = await start(undefined, { idleTimeoutMs: 1_000 });
    const socket = net.connect(s.port, "127.0.0.1");
    let buffer = "";
    socket.on("data", (d) => (buffer += d.toString("latin1")));
    const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now())));
    const waitFor = async (pattern: RegExp) => {
      const deadline = Date.now() + 5_000;
      while (!pattern.test(buffer)) {
        if (Date.now() > deadline) throw new Error(`no reply matching ${pattern}: ${buffer}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitFor(/^220 /m);
    socket.write("EHLO client.test\r\n");
    await waitFor(/^250 /m);
    const silentFrom = Date.now();
    const closedAt = await closed;
    expect(buffer).toMatch(/^421 /m);
    expect(closedAt - silentFrom).toBeGreaterThanOrEqual(900);
  });

  it("waits the RFC 5321 five minutes for a silent client by default", () => {
    expect(loadOriginConfig({ ...MINIMAL_ENV }).INBOUND_IDLE_TIMEOUT_MS).toBe(300_000);
  });

  it("takes the bounce address, postmaster and the FBL address; refuses other mailboxes and domains", async () => {
    const s = await start();
    for (const to of [`bounces@${DOMAIN}`, `postmaster@${DOMAIN}`, `FBL@${DOMAIN}`]) {
      expect((await send(s.port, [to])).accepted).toEqual([to]);
    }
    await expect(send(s.port, [`alice@${DOMAIN}`])).rejects.toMatchObject({ responseCode: 550 });
    await expect(send(s.port, ["bounces@other.test"])).rejects.toMatchObject({ responseCode: 550 });
    await expect(send(s.port, [`bounces+msg_1.abcdefghij@${DOMAIN}`])).rejects.toMatchObject({
      responseCode: 550,
    });
  });

  it("refuses input that is not a message with 550 5.6.0", async () => {
    const s = await start();
    const t = nodemailer.createTransport({ host: "127.0.0.1", port: s.port, secure: false });
    try {
      await expect(
        t.sendMail({ envelope: { from: "", to: [`bounces@${DOMAIN}`] }, raw: "no headers here at all\r\n" }),
      ).rejects.toMatchObject({ responseCode: 550, response: expect.stringContaining("5.6.0") });
    } finally {
      t.close();
    }
  });
});
