/**
 * Opportunistic TLS (RFC 3207, RFC 7435 §3): a server that offers STARTTLS and then fails the
 * handshake is tried again at the same address in plaintext, as Postfix does, and the message is
 * delivered. The server here is a real smtp-server whose TLS stops at 1.1, which Node's client
 * refuses (its minimum is TLS 1.2), so every handshake fails as with an old receiving MTA.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createSmtpTransport, type SmtpTransport } from "../../origin/src/smtp/transport.ts";
import { createSelfSignedCert, startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

let transport: SmtpTransport | undefined;
let server: TestSmtpServer | undefined;
afterEach(async () => {
  await transport?.close();
  await server?.close();
  transport = undefined;
  server = undefined;
});

const raw = Buffer.from(
  "From: a@sender.test\r\nTo: b@inbox.test\r\nSubject: tls\r\nMessage-ID: <tls@sender.test>\r\n\r\nbody\r\n",
);

describe("STARTTLS failure fallback", () => {
  it("a failed STARTTLS handshake → the same address again in plaintext, delivered with tls=false", async () => {
    server = await startSmtpServer({ tls: createSelfSignedCert("mx.inbox.test"), tlsMaxVersion: "TLSv1.1" });
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 5_000,
      maxConnectionsPerHost: 1,
    });
    const [outcome] = await transport.deliver({
      hosts: [{ exchange: "mx.inbox.test", preference: 10, addresses: ["127.0.0.1"] }],
      port: server.port,
      envelopeFrom: "bounces@sender.test",
      recipients: ["b@inbox.test"],
      raw,
    });
    expect(outcome).toMatchObject({
      status: "delivered",
      smtpCode: 250,
      tls: false,
      mxHost: "mx.inbox.test",
    });
    // One connection whose handshake failed, one plaintext connection that carried the message.
    expect(server.connections).toBe(2);
    expect(server.messages).toHaveLength(1);
    expect(server.messages[0]).toMatchObject({ rcptTo: ["b@inbox.test"], secure: false });
  });

  it("the same server with a TLS version the client speaks is used over TLS (the fallback is only for failures)", async () => {
    server = await startSmtpServer({ tls: createSelfSignedCert("mx.inbox.test") });
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 5_000,
      maxConnectionsPerHost: 1,
    });
    const [outcome] = await transport.deliver({
      hosts: [{ exchange: "mx.inbox.test", preference: 10, addresses: ["127.0.0.1"] }],
      port: server.port,
      envelopeFrom: "bounces@sender.test",
      recipients: ["b@inbox.test"],
      raw,
    });
    expect(outcome).toMatchObject({ status: "delivered", tls: true });
    expect(server.connections).toBe(1);
    expect(server.messages[0]?.secure).toBe(true);
  });
});
