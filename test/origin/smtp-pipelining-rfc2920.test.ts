/**
 * PIPELINING (RFC 2920), observed at the server: when it is advertised, nodemailer's SMTPConnection
 * (10.x, `_setEnvelope`) sends MAIL FROM, every RCPT TO and DATA of a transaction in one batch, so
 * they arrive before any of their replies went out; when it is not, each command waits for the reply
 * to the one before. Several recipients of one domain share one transaction.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createSmtpTransport, type SmtpTransport } from "../../origin/src/smtp/transport.ts";
import { startScriptedServer, type ScriptedServer } from "../helpers/smtp-servers.ts";

let transport: SmtpTransport | undefined;
let server: ScriptedServer | undefined;
afterEach(async () => {
  await transport?.close();
  await server?.close();
  transport = undefined;
  server = undefined;
});

const recipients = ["a@inbox.test", "b@inbox.test", "c@inbox.test"];

async function deliverOnce(pipelining: boolean) {
  server = await startScriptedServer({ pipelining });
  transport = createSmtpTransport({
    heloName: "origin.test",
    connectTimeoutMs: 5_000,
    maxConnectionsPerHost: 1,
  });
  const outcomes = await transport.deliver({
    hosts: [{ exchange: "mx.inbox.test", preference: 10, addresses: ["127.0.0.1"] }],
    port: server.port,
    envelopeFrom: "bounces@sender.test",
    recipients,
    raw: Buffer.from("From: x@sender.test\r\nTo: a@inbox.test\r\nSubject: p\r\n\r\nbody\r\n"),
  });
  expect(outcomes.map((o) => o.status)).toEqual(["delivered", "delivered", "delivered"]);
  expect(server.messages).toEqual([
    { mailFrom: "bounces@sender.test", rcptTo: recipients, size: expect.any(Number) },
  ]);
  // The envelope commands with the replies the server still owed when each arrived.
  return server.commands
    .filter((c) => /^(MAIL|RCPT|DATA)/.test(c.line))
    .map((c) => [c.line.split(/[ :]/)[0], c.owed] as const);
}

describe("PIPELINING (RFC 2920)", () => {
  it("advertised: MAIL, the three RCPTs and DATA go out in one batch, before any reply", async () => {
    expect(await deliverOnce(true)).toEqual([
      ["MAIL", 0],
      ["RCPT", 1],
      ["RCPT", 2],
      ["RCPT", 3],
      ["DATA", 4],
    ]);
  });

  it("not advertised: each command waits for the reply to the one before", async () => {
    expect(await deliverOnce(false)).toEqual([
      ["MAIL", 0],
      ["RCPT", 0],
      ["RCPT", 0],
      ["RCPT", 0],
      ["DATA", 0],
    ]);
  });
});
