/**
 * The origin node as an operator runs it: `tsx origin/src/main.ts` as its own process (what the
 * Dockerfile runs), linked to the edge Worker in workerd (Miniflare), delivering to an SMTP server on
 * loopback that can hold a message at DATA. Covers what docs/operations.md promises:
 *  - `/readyz` is 503 while a hub link is down and 200 while the links to both shards are up;
 *  - `/metrics` exports the documented metrics, with values that match what happened;
 *  - SIGTERM drains: no new jobs, the job in flight finishes and its result is recorded at the edge,
 *    then the process exits 0; what it did not take goes to the next node.
 * The origin reaches the edge through a TCP relay the test opens and cuts, standing in for the
 * network between them. Every process and server started here is stopped by its pid or handle.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminClient } from "../../scripts/lib/admin-client.ts";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { freePort, REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";

// ---------------------------------------------------------------- parts

interface HoldingSmtp {
  port: number;
  received: { rcptTo: string[]; raw: string }[];
  /** From now on, a message's DATA is taken but not answered until release(). */
  hold(): void;
  /** Answers every held DATA with 250 and stops holding. */
  release(): void;
  /** Resolves once `n` messages are being held. */
  whenHolding(n: number): Promise<void>;
  close(): Promise<void>;
}

async function startHoldingSmtp(): Promise<HoldingSmtp> {
  const received: HoldingSmtp["received"] = [];
  let holding = false;
  const held: (() => void)[] = [];
  let waiters: { n: number; resolve: () => void }[] = [];
  const server = new SMTPServer({
    logger: false,
    disabledCommands: ["AUTH", "STARTTLS"],
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const answer = () => {
          received.push({
            rcptTo: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString("utf8"),
          });
          callback(null);
        };
        if (!holding) return answer();
        held.push(answer);
        waiters = waiters.filter((w) => (held.length >= w.n ? (w.resolve(), false) : true));
      });
    },
  });
  server.on("error", () => {}); // a client cut off mid-session is not a test failure
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.server.address() as net.AddressInfo).port,
    received,
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const answer of held.splice(0)) answer();
    },
    whenHolding: (n) =>
      held.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve })),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface Relay {
  port: number;
  /** Lets connections through to the edge. */
  open(): void;
  /** Drops every relayed connection and refuses new ones, like a network outage. */
  cut(): void;
  close(): Promise<void>;
}

async function startRelay(targetPort: number): Promise<Relay> {
  let open = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!open) return void client.destroy();
    const upstream = net.connect(targetPort, "127.0.0.1");
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", end);
      s.on("close", end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    open: () => {
      open = true;
    },
    cut: () => {
      open = false;
      for (const s of sockets) s.destroy();
    },
    close: () => {
      open = false;
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface OriginProcess {
  pid: number;
  httpPort: number;
  logs: Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  get(pathname: string): Promise<{ status: number; text: string }>;
  /** Ends the process and its child if a test left them running (its process group, by pid). */
  kill(): Promise<void>;
}

const secrets = {
  ORIGIN_TOKEN: randomBytes(24).toString("hex"),
  ADMIN_TOKEN: randomBytes(24).toString("hex"),
  SECRETS_KEY: randomBytes(32).toString("base64"),
  TRACKING_SECRET: randomBytes(24).toString("hex"),
  VERP_SECRET: randomBytes(24).toString("hex"),
};

async function startOriginProcess(edgeUrl: string, smtpPort: number, name: string): Promise<OriginProcess> {
  const httpPort = await freePort();
  const bin = path.join(REPO_ROOT, "node_modules", ".bin");
  const child: ChildProcess = spawn(path.join(bin, "tsx"), ["origin/src/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      PATH: `${bin}:${process.env.PATH ?? ""}`,
      HOME: process.env.HOME ?? os.tmpdir(),
      EDGE_URL: edgeUrl,
      ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
      VERP_SECRET: secrets.VERP_SECRET,
      NODE_ID: `ops-${name}-${randomBytes(3).toString("hex")}`,
      HELO_NAME: "origin.ops.test",
      SMARTHOST: `127.0.0.1:${smtpPort}`,
      HTTP_HOST: "127.0.0.1",
      HTTP_PORT: String(httpPort),
      // Four slots over two shard links, two each: while one job runs, the hub still holds credit
      // for this node on both shards, so a message sent during the drain could be pushed to it.
      CAPACITY: "4",
      DRAIN_TIMEOUT_MS: "20000",
      CONNECT_TIMEOUT_MS: "3000",
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so cleanup also ends the node process tsx starts. The tests signal
    // the tsx pid alone, as `docker stop` does with the Dockerfile's CMD.
    detached: true,
  });
  const logs: Record<string, unknown>[] = [];
  let logWaiters: { msg: string; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buffered = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      logs.push(entry);
      logWaiters = logWaiters.filter((w) => (w.msg === entry.msg ? (w.resolve(entry), false) : true));
    }
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const proc: OriginProcess = {
    pid: child.pid!,
    httpPort,
    logs,
    exited,
    waitForLog(msg, timeoutMs = 30_000) {
      const seen = logs.find((l) => l.msg === msg);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`origin ${name} never logged "${msg}"; stderr:\n${stderr}`)),
          timeoutMs,
        );
        logWaiters.push({
          msg,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
    async get(pathname) {
      const res = await fetch(`http://127.0.0.1:${httpPort}${pathname}`);
      return { status: res.status, text: await res.text() };
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(-child.pid!, "SIGKILL");
      await exited;
    },
  };
  return proc;
}

/** Polls `fn` until `check` passes; a state the code reaches, not a fixed sleep. */
async function until<T>(fn: () => Promise<T>, check: (v: T) => boolean, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (check(last)) return last;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: last ${JSON.stringify(last)} ${lastError ? String(lastError) : ""}`);
}

/** Prometheus text → { 'name{labels}': value }, and the declared type of each metric. */
function parseMetrics(text: string): { values: Map<string, number>; types: Map<string, string> } {
  const values = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { values, types };
}

// ---------------------------------------------------------------- the stack

const SENDER = "ops.sender.test";
let workDir: string;
let edge: MiniflareEdge;
let smtp: HoldingSmtp;
let relay: Relay;
let liveKey: string;
const origins: OriginProcess[] = [];

async function send(to: string, subject: string): Promise<string> {
  const res = await fetch(`${edge.url}/v3/mail/send`, {
    method: "POST",
    headers: { authorization: `Bearer ${liveKey}`, "content-type": "application/json" },
    body: JSON.stringify({
      personalizations: [{ to: [{ email: to }] }],
      from: { email: `app@${SENDER}` },
      subject,
      content: [{ type: "text/plain", value: `body of ${subject}` }],
    }),
  });
  const text = await res.text();
  expect(res.status, text).toBe(202);
  return (JSON.parse(text) as { message_id: string }).message_id;
}

async function message(id: string): Promise<{ status: string; events: { event_type: string }[] }> {
  const res = await fetch(`${edge.url}/v3/messages/${id}`, {
    headers: { authorization: `Bearer ${liveKey}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { status: string; events: { event_type: string }[] };
}

const waitForStatus = (id: string, statuses: string[]) =>
  until(
    () => message(id),
    (m) => statuses.includes(m.status),
    `message ${id} never reached ${statuses.join("/")}`,
  );

beforeAll(async () => {
  // Inside the repository: the bundle's module paths are relative to it (as for the benchmarks).
  fs.mkdirSync(path.join(REPO_ROOT, ".tmp"), { recursive: true });
  workDir = fs.mkdtempSync(path.join(REPO_ROOT, ".tmp", "e2e-ops-"));
  smtp = await startHoldingSmtp();
  edge = await startMiniflareEdge({
    persistDir: path.join(workDir, "edge"),
    vars: {
      ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
      ADMIN_TOKEN: secrets.ADMIN_TOKEN,
      SECRETS_KEY: secrets.SECRETS_KEY,
      TRACKING_SECRET: secrets.TRACKING_SECRET,
      // The sender domain counts as verified without DNS; this file is about the origin.
      DEV_MODE: "true",
      LINK_LEASE_MS: "15000",
      // Two hub shards: the node learns the count from shard 0's welcome and links to each.
      HUB_SHARDS: "2",
    },
  });
  relay = await startRelay(Number(new URL(edge.url).port));
  const admin = new AdminClient(edge.url, secrets.ADMIN_TOKEN);
  const tenant = await admin.createTenant("Ops");
  liveKey = (
    await admin.createApiKey(tenant.id, { name: "live", environment: "live", scopes: ["mail.send"] })
  ).api_key;
  const domain = await admin.createDomain(tenant.id, SENDER);
  expect(domain.verified).toBe(true);
});

afterAll(async () => {
  for (const o of origins) await o.kill();
  await relay?.close();
  await edge?.stop();
  await smtp?.close();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- tests

describe("an origin process", () => {
  let node: OriginProcess;

  it("answers /readyz 503 until it is linked to every hub shard, 200 while it is, and 503 again when the links drop", async () => {
    node = await startOriginProcess(`http://127.0.0.1:${relay.port}`, smtp.port, "a");
    origins.push(node);
    // The edge is unreachable (the relay refuses): alive, not ready.
    const notReady = await until(
      () => node.get("/readyz"),
      () => true,
      "the ops server never answered",
    );
    expect(notReady.status).toBe(503);
    expect(JSON.parse(notReady.text)).toEqual({ status: "not ready", links: [false] });
    expect((await node.get("/healthz")).status).toBe(200);

    relay.open();
    const ready = await until(
      () => node.get("/readyz"),
      (r) => r.status === 200,
      "never became ready",
    );
    // Ready only once it is linked to every shard.
    expect(JSON.parse(ready.text)).toEqual({ status: "ready", links: [true, true] });

    relay.cut();
    const dropped = await until(
      () => node.get("/readyz"),
      (r) => r.status === 503,
      "stayed ready without a link",
    );
    expect(JSON.parse(dropped.text)).toMatchObject({ status: "not ready" });
    relay.open();
    await until(
      () => node.get("/readyz"),
      (r) => r.status === 200,
      "never became ready again",
    );
  });

  it("exports the documented metrics on /metrics, with values that match one delivery", async () => {
    const id = await send("first@example.net", "metrics");
    await waitForStatus(id, ["delivered"]);

    const res = await node.get("/metrics");
    expect(res.status).toBe(200);
    const { values, types } = parseMetrics(res.text);
    // docs/operations.md "Health, readiness and metrics".
    expect(Object.fromEntries(types)).toEqual({
      scaisend_origin_jobs_in_flight: "gauge",
      scaisend_origin_link_connected: "gauge",
      scaisend_origin_recipient_outcomes_total: "counter",
      scaisend_origin_delivery_seconds: "histogram",
      scaisend_origin_queue_wait_seconds: "histogram",
      scaisend_origin_destination_connections: "gauge",
      scaisend_origin_warmup_allowance: "gauge",
      scaisend_origin_warmup_remaining: "gauge",
      scaisend_origin_throttled_recipients_total: "counter",
      scaisend_origin_coordinator_degraded: "gauge",
      scaisend_origin_inbound_messages_total: "counter",
      scaisend_origin_ip_pool_missing_jobs_total: "counter",
      // SMTP submission (docs/smtp-submission.md#metrics); typed even where no listener runs.
      scaisend_origin_submission_connections: "gauge",
      scaisend_origin_submission_connections_total: "counter",
      scaisend_origin_submission_auth_total: "counter",
      scaisend_origin_submission_messages_total: "counter",
      scaisend_origin_submission_refusals_total: "counter",
      scaisend_origin_submission_message_size_bytes: "histogram",
      scaisend_origin_submission_accept_seconds: "histogram",
    });
    // No Redis: never degraded; nothing throttled, no connection left open, warm-up off.
    expect(values.get("scaisend_origin_coordinator_degraded")).toBe(0);
    // No pools configured, so no job was deferred for a missing one.
    expect([...values.keys()].some((k) => k.startsWith("scaisend_origin_ip_pool_missing_jobs_total"))).toBe(
      false,
    );
    expect([...values.keys()].some((k) => k.startsWith("scaisend_origin_throttled_recipients_total"))).toBe(
      false,
    );
    expect([...values.keys()].some((k) => k.startsWith("scaisend_origin_destination_connections"))).toBe(
      false,
    );
    expect(values.get('scaisend_origin_link_connected{shard="0"}')).toBe(1);
    expect(values.get('scaisend_origin_link_connected{shard="1"}')).toBe(1);
    expect(values.get("scaisend_origin_jobs_in_flight")).toBe(0);
    expect(values.get('scaisend_origin_recipient_outcomes_total{status="delivered"}')).toBe(1);
    expect(values.get("scaisend_origin_delivery_seconds_count")).toBe(1);
    expect(values.get('scaisend_origin_delivery_seconds_bucket{le="+Inf"}')).toBe(1);
    const seconds = values.get("scaisend_origin_delivery_seconds_sum")!;
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(60);
    expect(values.get("scaisend_origin_queue_wait_seconds_count")).toBe(1);
    expect(smtp.received.map((m) => m.rcptTo)).toEqual([["first@example.net"]]);
  });

  it("on SIGTERM takes no new job, finishes the one in flight, has its result recorded at the edge and exits 0", async () => {
    smtp.hold();
    const inFlight = await send("inflight@example.net", "in flight at SIGTERM");
    await smtp.whenHolding(1);
    const during = parseMetrics((await node.get("/metrics")).text).values;
    expect(during.get("scaisend_origin_jobs_in_flight")).toBe(1);

    process.kill(node.pid, "SIGTERM");
    await node.waitForLog("draining");
    // Accepted while the node drains: it must go to another node, not to this one.
    const later = await send("later@example.net", "sent during the drain");

    smtp.release();
    expect(await node.exited).toEqual({ code: 0, signal: null });
    expect(node.logs.some((l) => l.msg === "origin node stopped")).toBe(true);

    // The drain waited for the edge's acknowledgement, so the outcome is already recorded.
    const m = await message(inFlight);
    expect(m.status).toBe("delivered");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
    // The draining node delivered nothing it had not started before SIGTERM.
    expect(smtp.received.map((r) => r.rcptTo[0])).toEqual(["first@example.net", "inflight@example.net"]);
    expect(["queued", "processing", "rendered", "sending"]).toContain((await message(later)).status);

    // The next node picks it up.
    const next = await startOriginProcess(`http://127.0.0.1:${relay.port}`, smtp.port, "b");
    origins.push(next);
    await waitForStatus(later, ["delivered"]);
    expect(smtp.received.map((r) => r.rcptTo[0])).toEqual([
      "first@example.net",
      "inflight@example.net",
      "later@example.net",
    ]);
    process.kill(next.pid, "SIGTERM");
    expect(await next.exited).toEqual({ code: 0, signal: null });
  });
});
