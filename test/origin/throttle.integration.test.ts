// Per-destination limits and warm-up (origin/src/delivery/throttle.ts, warmup.ts) through the real
// delivery engine, against the loopback DNS server and scripted SMTP servers; two engines on one
// real redis-server stand for two nodes. What counts is what the SMTP server saw: messages, recipients
// and connections, never how fast anything went.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryJob, RecipientOutcome } from "../../shared/link/protocol.ts";
import {
  createMemoryCoordinator,
  createRedisCoordinator,
  withMemoryFallback,
  type Coordinator,
} from "../../origin/src/coord/index.ts";
import { createDeliveryEngine, type DeliveryEngine } from "../../origin/src/delivery/engine.ts";
import {
  createDeliveryLimits,
  createThrottle,
  createThrottlePolicy,
  type ThrottlePolicyOptions,
} from "../../origin/src/delivery/throttle.ts";
import {
  createWarmup,
  parseWarmupSchedule,
  parseWarmupStart,
  type Warmup,
} from "../../origin/src/delivery/warmup.ts";
import { createMetrics, type Metrics } from "../../origin/src/ops/metrics.ts";
import { startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.ts";
import { startSinkServer, startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

const DOMAINS = [
  "dest.test",
  "paced.test",
  "pushy.test",
  "recover.test",
  "warm.test",
  "shared.test",
  "slow.test",
  "stall.test",
  "outage.test",
  "gmail.com",
  "googlemail.com",
];
// Every domain has its own MX name, all on 127.0.0.1 (the servers differ by port, one engine per server).
const ZONE: DnsZone = Object.fromEntries(
  DOMAINS.flatMap((d) => [
    [d, { MX: [{ preference: 10, exchange: `mx.${d}` }] }],
    [`mx.${d}`, { A: ["127.0.0.1"] }],
  ]),
);

let dns: TestDnsServer;
let redis: TestRedisServer;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: ZONE });
  redis = await startRedisServer();
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await dns?.close();
  await redis?.stop();
});

async function server(s: Promise<TestSmtpServer>): Promise<TestSmtpServer> {
  const started = await s;
  closers.push(() => started.close());
  return started;
}

interface Setup {
  port: number;
  coordinator?: Coordinator;
  throttle?: ThrottlePolicyOptions;
  warmup?: { schedule: string; start: string };
  nodeId?: string;
}

function engine(setup: Setup): { engine: DeliveryEngine; metrics: Metrics; warmup?: Warmup } {
  const metrics = createMetrics();
  const coordinator = setup.coordinator ?? createMemoryCoordinator();
  if (!setup.coordinator) closers.push(() => coordinator.close());
  const warmup = setup.warmup
    ? createWarmup({
        coordinator,
        schedule: parseWarmupSchedule(setup.warmup.schedule),
        starts: parseWarmupStart(setup.warmup.start),
        nodeId: setup.nodeId ?? "node-1",
        metrics,
      })
    : undefined;
  const limits = createDeliveryLimits({
    throttle: createThrottle({ coordinator, policy: createThrottlePolicy(setup.throttle), metrics }),
    ...(warmup ? { warmup } : {}),
  });
  const e = createDeliveryEngine({
    heloName: "origin.sender.test",
    smtpPort: setup.port,
    dnsServers: [dns.server],
    verpSecret: "verp-secret-for-throttle-tests",
    connectTimeoutMs: 2_000,
    maxConnectionsPerHost: 4,
    allowPrivateMx: true, // loopback stands in for the recipients' MX hosts
    coordinator,
    limits,
  });
  closers.push(() => e.close());
  return { engine: e, metrics, ...(warmup ? { warmup } : {}) };
}

let seq = 0;
function job(recipients: string[], from = "news@sender.test"): DeliveryJob {
  const messageId = `msg_thr${++seq}`;
  return {
    jobId: `${messageId}.1`,
    messageId,
    tenantId: "t_1",
    attempt: 1,
    recipients,
    message: {
      from: { email: from },
      to: recipients.map((email) => ({ email })),
      subject: "Throttle",
      text: "Hello",
      headers: {},
      messageIdHeader: `${messageId}@sender.test`,
    },
    dkim: null,
  };
}

const soon = () => ({ deadlineAt: Date.now() + 10_000 });
const today = () => new Date().toISOString().slice(0, 10);
const daysAgo = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10);
const msToNextUtcDay = () => 86_400_000 - (Date.now() % 86_400_000);
const recipientsSeen = (s: TestSmtpServer) => s.messages.flatMap((m) => m.rcptTo);

describe("rate per destination domain", () => {
  it("over the rate the server sees exactly the allowed transactions; the rest are deferred with a retry time, never bounced", async () => {
    const sink = await server(startSinkServer());
    const { engine: e, metrics } = engine({ port: sink.port, throttle: { rates: "dest.test=2/1h" } });
    const outcomes: RecipientOutcome[] = [];
    for (let i = 0; i < 5; i++) outcomes.push(...(await e.deliver(job([`r${i}@dest.test`]), soon())));

    expect(outcomes.map((o) => o.status)).toEqual([
      "delivered",
      "delivered",
      "deferred",
      "deferred",
      "deferred",
    ]);
    expect(sink.messages).toHaveLength(2);
    for (const o of outcomes.slice(2)) {
      expect(o.response).toMatch(
        /^rate limit for dest\.test \(2 per 1h\): no token within \d+ s; retry after \d+ s$/,
      );
      expect(o.smtpCode).toBeUndefined();
      // The bucket refills one token per 30 min: nothing is due sooner.
      expect(o.retryAfterMs).toBeGreaterThan(25 * 60_000);
    }
    expect(metrics.throttled.get({ reason: "rate", destination: "dest.test" })).toBe(3);
    expect(metrics.render()).toMatch(
      /^scaisend_origin_throttled_recipients_total\{destination="dest\.test",reason="rate"\} 3$/m,
    );
  });

  it("a provider's domains share one bucket: googlemail.com counts against gmail.com", async () => {
    const sink = await server(startSinkServer());
    const { engine: e } = engine({ port: sink.port, throttle: { rates: "gmail.com=1/1h" } });
    const [first] = await e.deliver(job(["a@gmail.com"]), soon());
    const [second] = await e.deliver(job(["b@googlemail.com"]), soon());
    expect(first!.status).toBe("delivered");
    expect(second!.status).toBe("deferred");
    expect(second!.response).toMatch(/^rate limit for gmail\.com /);
    expect(recipientsSeen(sink)).toEqual(["a@gmail.com"]);
  });

  it("a token due within the wait budget is waited for: every message is delivered, paced at the server", async () => {
    const sink = await server(startSinkServer());
    const { engine: e } = engine({ port: sink.port, throttle: { rates: "paced.test=1/300ms" } });
    const outcomes = (
      await Promise.all([0, 1, 2, 3].map((i) => e.deliver(job([`p${i}@paced.test`]), soon())))
    ).flat();
    expect(outcomes.every((o) => o.status === "delivered")).toBe(true);
    expect(sink.messages).toHaveLength(4);
    // Tokens at 0, 300, 600 and 900 ms: the last DATA cannot come before 900 ms after the first
    // (a lower bound the limiter guarantees; 200 ms of slack for the first session's setup).
    const at = sink.messages.map((m) => m.acceptedAt).sort((a, b) => a - b);
    expect(at[3]! - at[0]!).toBeGreaterThanOrEqual(700);
  });
});

describe("connections per destination domain", () => {
  it("past the domain's concurrency a transaction waits for its turn, then is deferred; the server sees one connection", async () => {
    const stall = await server(startSmtpServer({ stallData: true }));
    const { engine: e, metrics } = engine({ port: stall.port, throttle: { concurrency: "stall.test=1" } });
    const first = e.deliver(job(["a@stall.test"]), { deadlineAt: Date.now() + 4_000 });
    // The first message sits in DATA at the server: the domain's one slot is taken.
    for (let i = 0; i < 300 && stall.stalled === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(stall.stalled).toBe(1);
    const [second] = await e.deliver(job(["b@stall.test"]), { deadlineAt: Date.now() + 1_000 });
    expect(second!.status).toBe("deferred");
    expect(second!.response).toMatch(
      /^connection limit for stall\.test: 1 transactions in progress, none ended within \d+ s$/,
    );
    // maxConnectionsPerHost is 4: only the domain limit kept the second session from opening.
    expect(stall.connections).toBe(1);
    expect(metrics.throttled.get({ reason: "concurrency", destination: "stall.test" })).toBe(1);
    const [a] = await first;
    expect(a!.status).toBe("deferred"); // its deadline came while the server stalled
  });
});

describe("back-off after 421 / 4xx", () => {
  it("a destination that answers 421 is paused: later mail is deferred without a connection, with when to retry", async () => {
    const pushy = await server(
      startSmtpServer({
        onConnect: () => ({ code: 421, message: "4.7.0 Try again later, closing connection" }),
      }),
    );
    const { engine: e, metrics } = engine({
      port: pushy.port,
      throttle: { backoff: { baseMs: 120_000, maxMs: 600_000, decayMs: 600_000 } },
    });
    const [first] = await e.deliver(job(["a@pushy.test"]), soon());
    expect(first).toMatchObject({ status: "deferred", smtpCode: 421 });
    expect(first!.retryAfterMs).toBeUndefined(); // the server's own deferral: the hub's schedule applies
    expect(pushy.connections).toBe(1);

    const later = (
      await Promise.all([e.deliver(job(["b@pushy.test"]), soon()), e.deliver(job(["c@pushy.test"]), soon())])
    ).flat();
    for (const o of later) {
      expect(o.status).toBe("deferred");
      expect(o.response).toMatch(
        /^pushy\.test is pushing back \(421 4\.7\.0 Try again later, closing connection\): backing off \(level 1\); retry after \d+ s$/,
      );
      expect(o.retryAfterMs).toBeGreaterThan(100_000);
    }
    // Not one more connection while paused.
    expect(pushy.connections).toBe(1);
    expect(metrics.throttled.get({ reason: "backoff", destination: "*" })).toBe(2);
  });

  it("after the pause delivery resumes; THROTTLE_PUSHBACK_AFTER whole-transaction 4xx in a row count as pushback, fewer or a partial one do not", async () => {
    let refuseAll = true;
    const recover = await server(
      startSmtpServer({
        onRcpt: (address) =>
          refuseAll || address.startsWith("no")
            ? { code: 451, message: "4.7.1 Please try again later" }
            : null,
      }),
    );
    const { engine: e } = engine({
      port: recover.port,
      throttle: { backoff: { baseMs: 300, maxMs: 10_000, decayMs: 600_000 }, pushbackAfter: 2 },
    });
    const [refused] = await e.deliver(job(["a@recover.test"]), soon());
    expect(refused).toMatchObject({ status: "deferred", smtpCode: 451 });
    // One all-4xx transaction is not yet pushback (greylisting looks like this): the next is tried.
    const [again] = await e.deliver(job(["a2@recover.test"]), soon());
    expect(again).toMatchObject({ status: "deferred", smtpCode: 451 });
    const [paused] = await e.deliver(job(["b@recover.test"]), soon());
    expect(paused!.response).toMatch(/^recover\.test is pushing back .*level 1/);
    const connectionsWhilePaused = recover.connections;

    refuseAll = false;
    // The pause is 300 ms: ask until the destination is tried again (bounded).
    let outcomes: RecipientOutcome[] = [];
    for (let i = 0; i < 50; i++) {
      outcomes = await e.deliver(job(["ok@recover.test", "no@recover.test"]), soon());
      if (!/pushing back/.test(outcomes[0]!.response)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(outcomes.map((o) => o.status)).toEqual(["delivered", "deferred"]);
    expect(recover.connections).toBeGreaterThan(connectionsWhilePaused);
    // One recipient refused among others accepted (greylisting one address) is not pushback.
    const [next] = await e.deliver(job(["ok2@recover.test"]), soon());
    expect(next!.status).toBe("delivered");
  });

  it("greylisting (each new address refused once with 451) never pauses the destination under the default policy", async () => {
    const seen = new Set<string>();
    const grey = await server(
      startSmtpServer({
        onRcpt: (address) => {
          if (seen.has(address)) return null;
          seen.add(address);
          return { code: 451, message: "4.7.1 Greylisted, please try again later" };
        },
      }),
    );
    const { engine: e, metrics } = engine({ port: grey.port });
    // First attempts of two new addresses, then their retries, then a third new one: a delivered
    // retry between them ends each run of all-4xx transactions before it reaches the threshold.
    for (const address of ["a@dest.test", "b@dest.test"]) {
      const [first] = await e.deliver(job([address]), soon());
      expect(first).toMatchObject({ status: "deferred", smtpCode: 451 });
      const [retry] = await e.deliver(job([address]), soon());
      expect(retry).toMatchObject({ status: "delivered", smtpCode: 250 });
    }
    const [third] = await e.deliver(job(["c@dest.test"]), soon());
    expect(third).toMatchObject({ status: "deferred", smtpCode: 451 });
    expect(metrics.throttled.get({ reason: "backoff", destination: "*" })).toBe(0);
    expect(grey.messages.map((m) => m.rcptTo)).toEqual([["a@dest.test"], ["b@dest.test"]]);
  });
});

describe("warm-up", () => {
  it("over today's allowance mail is deferred until the next UTC day, not bounced; the server sees only the allowance", async () => {
    const sink = await server(startSinkServer());
    const { engine: e, metrics } = engine({
      port: sink.port,
      warmup: { schedule: "2,5", start: `sender.test=${today()}` },
    });
    const outcomes = await e.deliver(job(["a@warm.test", "b@warm.test", "c@warm.test"]), soon());
    expect(outcomes.map((o) => o.status)).toEqual(["delivered", "delivered", "deferred"]);
    expect(recipientsSeen(sink)).toEqual(["a@warm.test", "b@warm.test"]);
    const deferred = outcomes[2]!;
    expect(deferred.response).toMatch(
      /^warm-up allowance for sender\.test reached: 2 of 2 recipients today \(day 1 of 2\); retry after \d{4}-\d{2}-\d{2}T00:00:00Z$/,
    );
    expect(deferred.retryAfterMs).toBeGreaterThanOrEqual(msToNextUtcDay() - 1_000);

    const [next] = await e.deliver(job(["d@warm.test"]), soon());
    expect(next!.status).toBe("deferred");
    expect(recipientsSeen(sink)).toHaveLength(2);
    expect(metrics.render()).toMatch(/^scaisend_origin_warmup_allowance\{sender="sender\.test"\} 2$/m);
    expect(metrics.render()).toMatch(/^scaisend_origin_warmup_remaining\{sender="sender\.test"\} 0$/m);

    // A sender without an entry is not limited.
    const other = await e.deliver(
      job(["e@warm.test", "f@warm.test", "g@warm.test"], "hi@other.test"),
      soon(),
    );
    expect(other.every((o) => o.status === "delivered")).toBe(true);
  });

  it("the day of the schedule follows the start date, `*` counts what this node sends, and past the schedule nothing is limited", async () => {
    const sink = await server(startSinkServer());
    const { engine: e, metrics } = engine({
      port: sink.port,
      warmup: { schedule: "1,3", start: `day2.test=${daysAgo(1)},done.test=${daysAgo(2)},*=${today()}` },
    });
    const day2 = await e.deliver(
      job(["1@warm.test", "2@warm.test", "3@warm.test", "4@warm.test"], "a@day2.test"),
      soon(),
    );
    expect(day2.map((o) => o.status)).toEqual(["delivered", "delivered", "delivered", "deferred"]);
    expect(day2[3]!.response).toMatch(/3 of 3 recipients today \(day 2 of 2\)/);
    const done = await e.deliver(job(["5@warm.test", "6@warm.test"], "a@done.test"), soon());
    expect(done.every((o) => o.status === "delivered")).toBe(true);
    // Any other sender counts against the node's own allowance (day 1: one recipient).
    const node = await e.deliver(job(["7@warm.test", "8@warm.test"], "a@else.test"), soon());
    expect(node.map((o) => o.status)).toEqual(["delivered", "deferred"]);
    expect(node[1]!.response).toMatch(/^warm-up allowance for this node reached: 1 of 1/);
    expect(metrics.render()).toMatch(/^scaisend_origin_warmup_remaining\{sender="\*"\} 0$/m);
    expect(recipientsSeen(sink)).toHaveLength(6);
  });
});

describe("two nodes on one Redis", () => {
  it("share the rate and the warm-up allowance: the server sees the limit once, not once per node", async () => {
    const sink = await server(startSinkServer());
    const started = [1, 2, 3].map((n) => {
      const coordinator = createRedisCoordinator(redis.url);
      closers.push(() => coordinator.close());
      return engine({
        port: sink.port,
        coordinator,
        nodeId: `node-${n}`,
        throttle: { rates: "shared.test=3/1h" },
        warmup: { schedule: "4", start: `sender.test=${today()}` },
      });
    });
    const nodes = started.map((n) => n.engine);
    const outcomes = (
      await Promise.all(
        [0, 1, 2, 3, 4, 5].map((i) => nodes[i % 2]!.deliver(job([`s${i}@shared.test`]), soon())),
      )
    ).flat();
    const delivered = outcomes.filter((o) => o.status === "delivered");
    expect(delivered).toHaveLength(3);
    expect(sink.messages).toHaveLength(3);
    expect(outcomes.filter((o) => /^rate limit for shared\.test/.test(o.response))).toHaveLength(3);

    // Warm-up: 3 of today's 4 were counted above; one more goes, by whichever node.
    const more = (
      await Promise.all([
        nodes[0]!.deliver(job(["w1@dest.test"]), soon()),
        nodes[1]!.deliver(job(["w2@dest.test"]), soon()),
      ])
    ).flat();
    expect(more.filter((o) => o.status === "delivered")).toHaveLength(1);
    expect(
      more.filter((o) => /^warm-up allowance for sender\.test reached: 4 of 4/.test(o.response)),
    ).toHaveLength(1);
    // A third node that sent nothing reads the shared count for /metrics (counting nothing).
    const third = started[2]!;
    expect(third.metrics.render()).not.toMatch(/scaisend_origin_warmup_remaining\{/);
    await third.warmup!.refreshMetrics();
    expect(third.metrics.render()).toMatch(/^scaisend_origin_warmup_allowance\{sender="sender\.test"\} 4$/m);
    expect(third.metrics.render()).toMatch(/^scaisend_origin_warmup_remaining\{sender="sender\.test"\} 0$/m);
  });
});

describe("/metrics", () => {
  it("shows the connections a destination has while a transaction is in progress, and drops it after", async () => {
    const slow = await server(startSmtpServer({ dataDelayMs: 400 }));
    const { engine: e, metrics } = engine({ port: slow.port });
    const delivering = e.deliver(job(["a@slow.test"]), soon());
    const line = /^scaisend_origin_destination_connections\{destination="slow\.test"\} 1$/m;
    let seen = false;
    for (let i = 0; i < 200 && !seen; i++) {
      seen = line.test(metrics.render());
      if (!seen) await new Promise((r) => setTimeout(r, 10));
    }
    expect(seen).toBe(true);
    const [outcome] = await delivering;
    expect(outcome!.status).toBe("delivered");
    expect(metrics.render()).not.toMatch(/destination_connections\{destination="slow\.test"\}/);
  });
});

describe("a Redis outage", () => {
  it("delivery goes on under per-node limits: nothing is lost or bounced, the rate still holds per node", async () => {
    const own = await startRedisServer();
    let stopped = false;
    closers.push(async () => {
      if (!stopped) await own.stop();
    });
    const sink = await server(startSinkServer());
    const coordinator = withMemoryFallback(createRedisCoordinator(own.url, { commandTimeoutMs: 500 }), {
      retryMs: 60_000,
    });
    closers.push(() => coordinator.close());
    const { engine: e } = engine({ port: sink.port, coordinator, throttle: { rates: "outage.test=2/1h" } });
    const [before] = await e.deliver(job(["o0@outage.test"]), soon());
    expect(before!.status).toBe("delivered");
    await own.stop();
    stopped = true;
    const during: RecipientOutcome[] = [];
    for (let i = 1; i <= 3; i++) during.push(...(await e.deliver(job([`o${i}@outage.test`]), soon())));
    expect(coordinator.degraded).toBe(true);
    // The node's own bucket starts full (2), so two go and the third waits: deferred, with a time.
    expect(during.map((o) => o.status)).toEqual(["delivered", "delivered", "deferred"]);
    expect(during[2]!.response).toMatch(/^rate limit for outage\.test/);
    expect(during[2]!.retryAfterMs).toBeGreaterThan(0);
    expect(sink.messages).toHaveLength(3);
  });
});
