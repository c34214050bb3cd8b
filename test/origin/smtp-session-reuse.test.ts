/**
 * SMTP sessions are reused for the next message to the same MX address, and a session the server
 * has closed is never used again.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { createSmtpTransport, type SmtpTransport } from "../../origin/src/smtp/transport.ts";
import { startSinkServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

const raw = (n: number) =>
  Buffer.from(
    `From: a@sender.test\r\nTo: b@inbox.test\r\nSubject: m${n}\r\nMessage-ID: <m${n}@sender.test>\r\n\r\nbody ${n}\r\n`,
  );

let transport: SmtpTransport | undefined;
let sink: TestSmtpServer | undefined;
afterEach(async () => {
  await transport?.close();
  await sink?.close();
  transport = undefined;
  sink = undefined;
});

const params = (port: number, n: number, exchange = "mx.inbox.test") => ({
  hosts: [{ exchange, preference: 10, addresses: ["127.0.0.1"] }],
  port,
  envelopeFrom: "bounces@sender.test",
  recipients: [`rcpt${n}@inbox.test`],
  raw: raw(n),
});

describe("SMTP session reuse", () => {
  it("sends consecutive messages to one MX over one connection", async () => {
    sink = await startSinkServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 2000,
      maxConnectionsPerHost: 2,
    });
    for (let n = 0; n < 5; n++) {
      const [outcome] = await transport.deliver(params(sink.port, n));
      expect(outcome!.status).toBe("delivered");
    }
    expect(sink.messages.map((m) => m.rcptTo[0])).toEqual([0, 1, 2, 3, 4].map((n) => `rcpt${n}@inbox.test`));
    expect(sink.connections).toBe(1);
  });

  it("opens a new connection when the server has closed the idle one", async () => {
    sink = await startSinkServer();
    const port = sink.port;
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 2000,
      maxConnectionsPerHost: 1,
    });
    expect((await transport.deliver(params(port, 1)))[0]!.status).toBe("delivered");
    expect(transport.stats()).toEqual({ open: 1, idle: 1, idleAddresses: 1 });
    await sink.close(); // ends the idle session from the server side
    // The server's close removes the session from the idle map, not only from the open set.
    await vi.waitFor(() => expect(transport!.stats()).toEqual({ open: 0, idle: 0, idleAddresses: 0 }));
    sink = await startSinkServer();
    // The new sink has another port; deliver to it and to nothing stale.
    const [outcome] = await transport.deliver(params(sink.port, 2));
    expect(outcome!.status).toBe("delivered");
    expect(sink.connections).toBe(1);
    expect(sink.messages).toHaveLength(1);
  });

  it("parallel deliveries to one host never hold more connections than the per-host limit", async () => {
    sink = await startSinkServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 2000,
      maxConnectionsPerHost: 2,
    });
    const outcomes = await Promise.all(
      Array.from({ length: 12 }, (_, n) => transport!.deliver(params(sink!.port, n))),
    );
    expect(outcomes.flat().every((o) => o.status === "delivered")).toBe(true);
    expect(sink.messages).toHaveLength(12);
    expect(sink.connections).toBeLessThanOrEqual(2);
  });

  // Issue 6, item 11: the idle map's keys used to stay for good, one per address ever used.
  it("idle sessions to many addresses expire and leave the idle map empty", async () => {
    sink = await startSinkServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 2000,
      maxConnectionsPerHost: 2,
      idleTimeoutMs: 200,
    });
    // Forty MX names, so forty keys (the key is address, port, TLS mode and MX name).
    for (let n = 0; n < 40; n++) {
      const [outcome] = await transport.deliver(params(sink.port, n, `mx${n}.inbox.test`));
      expect(outcome!.status).toBe("delivered");
    }
    expect(transport.stats().idleAddresses).toBeGreaterThan(0);
    await vi.waitFor(() => expect(transport!.stats()).toEqual({ open: 0, idle: 0, idleAddresses: 0 }), {
      timeout: 5_000,
    });
    expect(sink.connections).toBe(40);
  });

  it("never keeps more idle sessions than maxIdleSessions; the longest-idle one is closed", async () => {
    sink = await startSinkServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 2000,
      maxConnectionsPerHost: 2,
      maxIdleSessions: 5,
    });
    for (let n = 0; n < 12; n++) {
      await transport.deliver(params(sink.port, n, `mx${n}.inbox.test`));
      expect(transport.stats().idle).toBeLessThanOrEqual(5);
    }
    expect(transport.stats()).toMatchObject({ idle: 5, idleAddresses: 5 });
    // The newest five are the ones kept: sending to mx11 again reuses its session, to mx0 does not.
    await transport.deliver(params(sink.port, 100, "mx11.inbox.test"));
    expect(sink.connections).toBe(12);
    await transport.deliver(params(sink.port, 101, "mx0.inbox.test"));
    expect(sink.connections).toBe(13);
    // Evicted sessions are closed, not just forgotten.
    await vi.waitFor(() => expect(transport!.stats().open).toBe(5));
  });

  it("close() leaves no trace", async () => {
    sink = await startSinkServer();
    transport = createSmtpTransport({
      heloName: "origin.test",
      connectTimeoutMs: 2000,
      maxConnectionsPerHost: 2,
    });
    for (let n = 0; n < 3; n++) await transport.deliver(params(sink.port, n, `mx${n}.inbox.test`));
    expect(transport.stats()).toEqual({ open: 3, idle: 3, idleAddresses: 3 });
    await transport.close();
    expect(transport.stats()).toEqual({ open: 0, idle: 0, idleAddresses: 0 });
  });
});
