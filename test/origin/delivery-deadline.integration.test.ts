/**
 * The job deadline (issue 6, item 7): `deliver(job, { deadlineAt })` never runs past it. Against
 * real loopback servers that stall (a DNS name that is never answered, a TCP server that never
 * greets, an SMTP server that never answers DATA), every recipient not yet decided by a server
 * comes back `deferred` once the deadline has passed, a reply the server gave before it is kept,
 * and nothing (connection, host slot) is left behind.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { createDeliveryEngine, type DeliveryEngineOptions } from "../../origin/src/delivery/engine.ts";
import { createSmtpTransport, type DeliverParams } from "../../origin/src/smtp/transport.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSinkServer, startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

let dns: TestDnsServer;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dns = await startDnsServer({
    records: {
      "dest.test": { MX: [{ preference: 10, exchange: "mx.dest.test" }] },
      "slow.test": { MX: [{ preference: 10, exchange: "mx.slow.test" }] },
      "mx.dest.test": { A: ["127.0.0.1"] },
      "mx.slow.test": { A: ["127.0.0.1"] },
      "hang.test": { silent: true },
    },
  });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await dns.close();
});

async function track<T extends { close(): Promise<void> }>(thing: T | Promise<T>): Promise<T> {
  const t = await thing;
  closers.push(() => t.close());
  return t;
}

function engineFor(port: number, extra: Partial<DeliveryEngineOptions> = {}) {
  const engine = createDeliveryEngine({
    heloName: "origin.sender.test",
    smtpPort: port,
    dnsServers: [dns.server],
    verpSecret: "verp-secret-for-deadline-tests",
    allowPrivateMx: true, // loopback stands in for the recipients' MX hosts
    connectTimeoutMs: 30_000,
    maxConnectionsPerHost: 2,
    ...extra,
  });
  closers.push(() => engine.close());
  return engine;
}

let seq = 0;
function job(recipients: string[]): DeliveryJob {
  const messageId = `msg_deadline_${++seq}`;
  return {
    jobId: `${messageId}.1`,
    messageId,
    tenantId: "t_1",
    attempt: 1,
    recipients,
    message: {
      from: { email: "news@sender.test" },
      to: recipients.map((email) => ({ email })),
      subject: "Deadline",
      text: "Hello",
      headers: {},
      messageIdHeader: `${messageId}@sender.test`,
    },
    dkim: null,
  };
}

/** A TCP server that accepts connections and never says a word (no SMTP greeting). */
async function startSilentTcpServer(): Promise<{
  port: number;
  connections: number;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const raw = Buffer.from("From: a@sender.test\r\nTo: b@slow.test\r\nSubject: x\r\n\r\nbody\r\n");
const params = (port: number, deadlineAt: number, exchange = "mx.slow.test"): DeliverParams => ({
  hosts: [{ exchange, preference: 10, addresses: ["127.0.0.1"] }],
  port,
  envelopeFrom: "bounces@sender.test",
  recipients: ["b@slow.test"],
  raw,
  deadlineAt,
});

describe("job deadline (issue 6, item 7)", () => {
  it("a server that never answers DATA → deferred after the deadline; another domain's 250 before it is kept", async () => {
    const server = await track(
      startSmtpServer({ stallData: (rcpts) => rcpts.some((r) => r.endsWith("@slow.test")) }),
    );
    const engine = engineFor(server.port);
    const deadlineAt = Date.now() + 1_500;
    const outcomes = await engine.deliver(job(["fast@dest.test", "slow@slow.test"]), { deadlineAt });

    expect(Date.now()).toBeGreaterThanOrEqual(deadlineAt);
    expect(outcomes[0]).toMatchObject({ recipient: "fast@dest.test", status: "delivered", smtpCode: 250 });
    expect(outcomes[1]).toMatchObject({
      recipient: "slow@slow.test",
      status: "deferred",
      mxHost: "mx.slow.test",
    });
    expect(outcomes[1]?.response).toMatch(
      /^job deadline reached before mx\.slow\.test confirmed the message/,
    );
    expect(server.messages.map((m) => m.rcptTo)).toEqual([["fast@dest.test"]]);
    expect(server.stalled).toBe(1);
    // The stalled session was closed, not kept for reuse.
    expect(engine.stats()).toMatchObject({ open: 1, idle: 1 }); // only the healthy dest.test session idles
  });

  it("a recipient the server refused at RCPT keeps its 5xx when the deadline cuts DATA short", async () => {
    const server = await track(
      startSmtpServer({
        stallData: true,
        onRcpt: (address) =>
          address.startsWith("nobody@") ? { code: 550, message: "5.1.1 user unknown" } : null,
      }),
    );
    const outcomes = await engineFor(server.port).deliver(job(["nobody@slow.test", "ann@slow.test"]), {
      deadlineAt: Date.now() + 1_000,
    });
    expect(outcomes[0]).toMatchObject({
      recipient: "nobody@slow.test",
      status: "bounced",
      smtpCode: 550,
      enhancedCode: "5.1.1",
    });
    expect(outcomes[1]).toMatchObject({ recipient: "ann@slow.test", status: "deferred" });
    expect(outcomes[1]?.response).toMatch(/^job deadline reached before/);
    expect(server.stalled).toBe(1);
  });

  it("a server that never greets → deferred at the deadline even with a long connect timeout", async () => {
    const silent = await track(startSilentTcpServer());
    const engine = engineFor(silent.port, { connectTimeoutMs: 60_000, greetingTimeoutMs: 60_000 });
    const deadlineAt = Date.now() + 500;
    const [outcome] = await engine.deliver(job(["c@slow.test"]), { deadlineAt });
    expect(Date.now()).toBeGreaterThanOrEqual(deadlineAt);
    expect(outcome).toMatchObject({ status: "deferred" });
    expect(outcome?.response).toMatch(/^job deadline reached before the session with mx\.slow\.test/);
    expect(silent.connections).toBe(1);
    expect(engine.stats()).toEqual({ open: 0, idle: 0, idleAddresses: 0 });
  });

  it("an MX look-up that is never answered → deferred at the deadline, no SMTP connection", async () => {
    const sink = await track(startSinkServer());
    const deadlineAt = Date.now() + 500;
    const [outcome] = await engineFor(sink.port).deliver(job(["d@hang.test"]), { deadlineAt });
    expect(Date.now()).toBeGreaterThanOrEqual(deadlineAt);
    expect(outcome).toMatchObject({
      status: "deferred",
      response: "job deadline reached before the MX look-up for hang.test finished",
    });
    expect(dns.queries.some((q) => q.name === "hang.test")).toBe(true);
    expect(sink.connections).toBe(0);
  });

  it("a deadline already past → every recipient deferred, no connection made", async () => {
    const sink = await track(startSinkServer());
    const outcomes = await engineFor(sink.port).deliver(job(["e@dest.test", "f@slow.test"]), {
      deadlineAt: Date.now() - 1,
    });
    expect(outcomes.map((o) => o.status)).toEqual(["deferred", "deferred"]);
    for (const o of outcomes) expect(o.response).toMatch(/^job deadline reached before/);
    expect(sink.connections).toBe(0);
  });

  it("waiting for a host slot ends at the deadline, and the slot held by a cut-short delivery is released", async () => {
    const stalling = await track(startSmtpServer({ stallData: true }));
    const sink = await track(startSinkServer());
    // One connection per host, and no cap of its own on the wait for a slot: only the deadline ends it.
    const transport = await track(
      createSmtpTransport({ heloName: "origin.test", connectTimeoutMs: 30_000, maxConnectionsPerHost: 1 }),
    );
    const holder = transport.deliver(params(stalling.port, Date.now() + 2_000));
    await vi.waitFor(() => expect(stalling.stalled).toBe(1), { timeout: 5_000 });

    const waiterDeadline = Date.now() + 300;
    const [waiter] = await transport.deliver(params(sink.port, waiterDeadline));
    expect(Date.now()).toBeGreaterThanOrEqual(waiterDeadline);
    expect(waiter).toMatchObject({ status: "deferred" });
    expect(waiter?.response).toBe(
      "job deadline reached before a connection slot for mx.slow.test became free",
    );
    expect(sink.connections).toBe(0);

    const [held] = await holder;
    expect(held).toMatchObject({ status: "deferred" });
    expect(held?.response).toMatch(/^job deadline reached before mx\.slow\.test confirmed the message/);
    expect(transport.stats()).toEqual({ open: 0, idle: 0, idleAddresses: 0 });

    // The same host again: the slot is free (a leaked one would leave this waiting until its deadline).
    const [next] = await transport.deliver(params(sink.port, Date.now() + 10_000));
    expect(next).toMatchObject({ status: "delivered" });
    expect(sink.messages).toHaveLength(1);
  });
});
