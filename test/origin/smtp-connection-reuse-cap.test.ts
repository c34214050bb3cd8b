/**
 * A reused SMTP session is closed with QUIT after MAX_MESSAGES_PER_CONNECTION messages, and the
 * next message opens a new one: counted at the server, per connection.
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

const deliver = (port: number, n: number) =>
  transport!.deliver({
    hosts: [{ exchange: "mx.inbox.test", preference: 10, addresses: ["127.0.0.1"] }],
    port,
    envelopeFrom: "bounces@sender.test",
    recipients: [`rcpt${n}@inbox.test`],
    raw: Buffer.from(`From: a@sender.test\r\nTo: rcpt${n}@inbox.test\r\nSubject: ${n}\r\n\r\nbody\r\n`),
  });

/** Per connection: how many MAIL FROM it carried and whether it ended with QUIT. */
function sessions(s: ScriptedServer) {
  const out = new Map<number, { mail: number; quit: boolean }>();
  for (const c of s.commands) {
    const e = out.get(c.connection) ?? { mail: 0, quit: false };
    if (c.line.startsWith("MAIL")) e.mail++;
    if (c.line === "QUIT") e.quit = true;
    out.set(c.connection, e);
  }
  return [...out.values()];
}

describe("messages per connection", () => {
  it("closes a session with QUIT after the cap and opens a new one for the next message", async () => {
    server = await startScriptedServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 5_000,
      maxConnectionsPerHost: 1,
      maxMessagesPerConnection: 3,
    });
    for (let n = 0; n < 7; n++) expect((await deliver(server.port, n))[0]!.status).toBe("delivered");
    expect(server.messages).toHaveLength(7);
    const seen = sessions(server);
    expect(seen.slice(0, 2)).toEqual([
      { mail: 3, quit: true },
      { mail: 3, quit: true },
    ]);
    // The third carries the seventh message and stays open for reuse.
    expect(seen[2]).toEqual({ mail: 1, quit: false });
    expect(server.connections).toBe(3);
  });

  it("by default a session carries up to 100 messages", async () => {
    server = await startScriptedServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 5_000,
      maxConnectionsPerHost: 1,
    });
    for (let n = 0; n < 101; n++) expect((await deliver(server.port, n))[0]!.status).toBe("delivered");
    expect(sessions(server).map((s) => s.mail)).toEqual([100, 1]);
  });
});
