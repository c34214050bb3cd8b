/**
 * Messages larger than the socket's buffer reach the server: the transport corks the socket while
 * nodemailer pipes the body and its final "." (one write for a small message), and must uncork once
 * the buffer is full, or the pipe waits for a 'drain' a corked socket never emits and the message
 * stalls until the job deadline (smtp/step-timeouts.ts).
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSmtpTransport, type SmtpTransport } from "../../origin/src/smtp/transport.ts";
import { startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

let sink: TestSmtpServer;
let transport: SmtpTransport;
beforeAll(async () => {
  sink = await startSmtpServer({});
  transport = createSmtpTransport({
    heloName: "origin.test",
    connectTimeoutMs: 2000,
    maxConnectionsPerHost: 1,
  });
});
afterAll(async () => {
  await transport.close();
  await sink.close();
});

describe("SMTP DATA larger than the socket buffer", () => {
  for (const size of [4_000, 200_000, 8_000_000]) {
    it(`delivers ${size} bytes of body intact, well before the deadline`, async () => {
      const body = randomBytes(size)
        .toString("base64")
        .replace(/(.{76})/g, "$1\r\n");
      const raw = Buffer.from(`From: a@sender.test\r\nTo: r@inbox.test\r\nSubject: big\r\n\r\n${body}\r\n`);
      const started = Date.now();
      const [outcome] = await transport.deliver({
        hosts: [{ exchange: "127.0.0.1", preference: 0, addresses: ["127.0.0.1"] }],
        port: sink.port,
        envelopeFrom: "a@sender.test",
        recipients: ["r@inbox.test"],
        raw,
        deadlineAt: Date.now() + 15_000,
      });
      expect(outcome!.status, outcome!.response).toBe("delivered");
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(sink.messages.at(-1)!.raw.equals(raw)).toBe(true);
    });
  }
});
