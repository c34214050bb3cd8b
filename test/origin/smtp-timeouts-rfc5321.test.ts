/**
 * RFC 5321 §4.5.3.2: a timer on every reply the client waits for (smtp/step-timeouts.ts). A scripted
 * server on loopback stalls at one step; the transport gives up after that step's timeout and
 * defers the recipients with a response naming the step, whatever the other timers say.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createSmtpTransport, type SmtpTransport } from "../../origin/src/smtp/transport.ts";
import { RFC5321_TIMEOUTS, type SmtpStepTimeouts } from "../../origin/src/smtp/step-timeouts.ts";
import {
  startScriptedServer,
  startSmtpServer,
  type ScriptedServer,
  type ScriptedStall,
} from "../helpers/smtp-servers.ts";

let transport: SmtpTransport | undefined;
let server: ScriptedServer | undefined;
afterEach(async () => {
  await transport?.close();
  await server?.close();
  transport = undefined;
  server = undefined;
});

const LONG = 60_000;
/** Every step at LONG except the one under test. */
const only = (key: keyof SmtpStepTimeouts, ms: number): SmtpStepTimeouts => ({
  greetingMs: LONG,
  heloMs: LONG,
  mailMs: LONG,
  rcptMs: LONG,
  dataInitMs: LONG,
  dataBlockMs: LONG,
  dataDoneMs: LONG,
  [key]: ms,
});

const message = (bytes = 0) =>
  Buffer.concat([
    Buffer.from(
      "From: a@sender.test\r\nTo: b@inbox.test\r\nSubject: t\r\nMessage-ID: <t@sender.test>\r\n\r\n",
    ),
    // Lines of 998 characters (RFC 5322 §2.1.1), enough of them to outgrow the socket buffers.
    Buffer.alloc(bytes, "x".repeat(998) + "\r\n"),
    Buffer.from("end\r\n"),
  ]);

function deliver(port: number, raw = message(), deadlineAt?: number) {
  return transport!.deliver({
    hosts: [{ exchange: "mx.inbox.test", preference: 10, addresses: ["127.0.0.1"] }],
    port,
    envelopeFrom: "bounces@sender.test",
    recipients: ["b@inbox.test", "c@inbox.test"],
    raw,
    ...(deadlineAt !== undefined ? { deadlineAt } : {}),
  });
}

describe("RFC 5321 §4.5.3.2 timeouts at each step", () => {
  const cases: {
    stall: ScriptedStall;
    key: keyof SmtpStepTimeouts;
    response: RegExp;
    bytes?: number;
  }[] = [
    { stall: "greeting", key: "greetingMs", response: /Greeting never received/ },
    { stall: "ehlo", key: "heloMs", response: /waiting for the reply to EHLO/ },
    { stall: "mail", key: "mailMs", response: /waiting for the reply to MAIL FROM/ },
    { stall: "rcpt", key: "rcptMs", response: /waiting for the reply to RCPT TO/ },
    { stall: "data", key: "dataInitMs", response: /waiting for the 354 reply to DATA/ },
    {
      stall: "dataBlock",
      key: "dataBlockMs",
      response: /waiting for the server to take the message data/,
      // More than loopback's socket buffers hold, so a server that stops reading stops the sends.
      bytes: 48 * 1024 * 1024,
    },
    { stall: "dataEnd", key: "dataDoneMs", response: /waiting for the reply after the final "\."/ },
  ];
  for (const c of cases) {
    it(`a server that stalls at ${c.stall} → deferred after ${c.key}, naming the step`, async () => {
      server = await startScriptedServer({ stallAt: c.stall });
      transport = createSmtpTransport({
        heloName: "origin.test",
        connectTimeoutMs: LONG,
        maxConnectionsPerHost: 1,
        stepTimeouts: only(c.key, 300),
      });
      const started = Date.now();
      const outcomes = await deliver(server.port, message(c.bytes));
      await server.stalled; // it did reach the step, and the client gave up there
      expect(outcomes.map((o) => o.status)).toEqual(["deferred", "deferred"]);
      for (const o of outcomes) {
        expect(o.response).toMatch(c.response);
        expect(o.response).toMatch(/ETIMEDOUT/);
      }
      // The other steps' timers are a minute: this one decided.
      expect(Date.now() - started).toBeLessThan(LONG / 2);
      expect(transport.stats().open).toBe(0);
    }, 30_000);
  }

  it("a greeting slower than the connect timeout is waited for: the greeting has its own timer", async () => {
    server = await startScriptedServer({ greetingDelayMs: 700 });
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 200,
      maxConnectionsPerHost: 1,
      stepTimeouts: { greetingMs: 10_000 },
    });
    const outcomes = await deliver(server.port);
    expect(outcomes.map((o) => o.status)).toEqual(["delivered", "delivered"]);
    expect(server.messages).toHaveLength(1);
  });

  it("a step answered in time hands over to the next one's longer timer: a slow reply to '.' after short steps", async () => {
    // Each step has its own timer (RFC 5321 §4.5.3.2), not one inactivity value for the session: the
    // short MAIL/RCPT/DATA timers must not end a session whose server takes its time over the ".".
    const slow = await startSmtpServer({ dataDelayMs: 700 });
    try {
      transport = createSmtpTransport({
        heloName: "origin.test",
        connectTimeoutMs: LONG,
        maxConnectionsPerHost: 1,
        stepTimeouts: { ...only("dataDoneMs", LONG), mailMs: 150, rcptMs: 150, dataInitMs: 150 },
      });
      const outcomes = await deliver(slow.port);
      expect(outcomes.map((o) => o.status)).toEqual(["delivered", "delivered"]);
      expect(slow.messages).toHaveLength(1);
    } finally {
      await transport?.close();
      transport = undefined;
      await slow.close();
    }
  });

  it("the job deadline caps a step timeout: the deadline's own verdict wins", async () => {
    server = await startScriptedServer({ stallAt: "dataEnd" });
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: LONG,
      maxConnectionsPerHost: 1,
      stepTimeouts: only("dataDoneMs", LONG),
    });
    const outcomes = await deliver(server.port, message(), Date.now() + 500);
    for (const o of outcomes)
      expect(o.response).toMatch(/job deadline reached before .* confirmed the message/);
  });

  it("defaults are the RFC's", () => {
    expect(RFC5321_TIMEOUTS).toEqual({
      greetingMs: 300_000,
      heloMs: 300_000,
      mailMs: 300_000,
      rcptMs: 300_000,
      dataInitMs: 120_000,
      dataBlockMs: 180_000,
      dataDoneMs: 600_000,
    });
  });
});
