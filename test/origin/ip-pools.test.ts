// IP pools on the origin (docs/configuration.md#ip-pools): the settings are checked at start (syntax,
// cross-references, every address bindable), and the engine delivers each job from an address of its
// pool, observed at a real SMTP server on loopback (Linux routes all of 127/8 to lo, so 127.0.0.2 and
// up are bindable without setup). Sessions are never reused across pools, a job for a pool the node
// lacks is deferred for another node, and warm-up counts per source address.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { createMemoryCoordinator } from "../../origin/src/coord/index.ts";
import { createDeliveryEngine, POOL_MISSING_RETRY_MS } from "../../origin/src/delivery/engine.ts";
import { createDeliveryLimits } from "../../origin/src/delivery/throttle.ts";
import { createWarmup, parseWarmupSchedule, parseWarmupStart } from "../../origin/src/delivery/warmup.ts";
import {
  assertBindable,
  createSourceAddresses,
  loadIpPoolConfig,
  parseIpPools,
  type IpPoolSettings,
} from "../../origin/src/smtp/source-address.ts";
import { startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSinkServer, startSmtpServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

const BASE_ENV = {
  EDGE_URL: "http://127.0.0.1:8787",
  ORIGIN_TOKEN: "o".repeat(32),
  VERP_SECRET: "v".repeat(32),
};
const configError = (env: Record<string, string>): string => {
  try {
    loadOriginConfig({ ...BASE_ENV, ...env });
  } catch (err) {
    return (err as Error).message;
  }
  return "no error";
};

describe("IP pool settings", () => {
  it("parse pools of IPv4 and IPv6 addresses, IPv6 in canonical form", () => {
    expect(
      parseIpPools(" transactional = 127.0.0.2 , 127.0.0.3 ; marketing=2001:DB8:0:0::20,127.0.0.4"),
    ).toEqual(
      new Map([
        ["transactional", ["127.0.0.2", "127.0.0.3"]],
        ["marketing", ["2001:db8::20", "127.0.0.4"]],
      ]),
    );
    const config = loadOriginConfig({
      ...BASE_ENV,
      IP_POOLS: "transactional=127.0.0.2;marketing=127.0.0.4",
      IP_POOL_DEFAULT: "transactional",
      IP_POOL_HELO_NAMES: "127.0.0.4=mta-m.sender.test",
    });
    expect(loadIpPoolConfig(config)).toEqual({
      pools: new Map([
        ["transactional", ["127.0.0.2"]],
        ["marketing", ["127.0.0.4"]],
      ]),
      defaultPool: "transactional",
      heloNames: new Map([["127.0.0.4", "mta-m.sender.test"]]),
    });
  });

  it.each<[string, IpPoolSettings & Record<string, string>, RegExp]>([
    [
      "an address that is not one",
      { IP_POOLS: "a1=127.0.0.2,mail.example" },
      /IP_POOLS: pool "a1": "mail.example" is not an IPv4 or IPv6 address/,
    ],
    [
      "a one-character name",
      { IP_POOLS: "a=127.0.0.2" },
      /IP_POOLS: invalid pool name "a": 2 to 64 characters/,
    ],
    ["a name over 64 characters", { IP_POOLS: `${"p".repeat(65)}=127.0.0.2` }, /invalid pool name/],
    ["a pool twice", { IP_POOLS: "p1=127.0.0.2;p1=127.0.0.3" }, /pool "p1" is defined twice/],
    ["an address twice in a pool", { IP_POOLS: "p1=127.0.0.2,127.0.0.2" }, /127\.0\.0\.2 is listed twice/],
    ["a pool without addresses", { IP_POOLS: "p1=" }, /pool "p1" has no address/],
    ["no = at all", { IP_POOLS: "127.0.0.2" }, /invalid pool "127\.0\.0\.2": use name=address/],
    ["the unspecified address", { IP_POOLS: "p1=0.0.0.0" }, /0\.0\.0\.0 cannot be a source address/],
    [
      "a multicast address",
      { IP_POOLS: "p1=ff02::1" },
      /ff02::1 cannot be a source address \(a multicast address\)/,
    ],
    [
      "a default that is no pool",
      { IP_POOLS: "p1=127.0.0.2", IP_POOL_DEFAULT: "p2" },
      /IP_POOL_DEFAULT: "p2" is not a pool of IP_POOLS \(p1\)/,
    ],
    [
      "a default without pools",
      { IP_POOL_DEFAULT: "p2" },
      /IP_POOL_DEFAULT: "p2" is not a pool of IP_POOLS \(none defined\)/,
    ],
    [
      "an EHLO name for an address of no pool",
      { IP_POOLS: "p1=127.0.0.2", IP_POOL_HELO_NAMES: "127.0.0.9=mx.example" },
      /IP_POOL_HELO_NAMES: 127\.0\.0\.9 is not an address of any pool/,
    ],
    [
      "an EHLO name that is no host name",
      { IP_POOLS: "p1=127.0.0.2", IP_POOL_HELO_NAMES: "127.0.0.2=bad name" },
      /IP_POOL_HELO_NAMES: .*invalid EHLO name entry "127\.0\.0\.2=bad name"/,
    ],
  ])("refuse %s", (_what, env, message) => {
    expect(configError(env)).toMatch(message);
  });

  it("are checked for bindable addresses at start: a loopback alias binds, an address of no interface does not", async () => {
    await expect(
      assertBindable(loadIpPoolConfig({ IP_POOLS: "p1=127.0.0.2,127.0.0.3,::1" })),
    ).resolves.toBeUndefined();
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): assigned to no interface here.
    await expect(
      assertBindable(loadIpPoolConfig({ IP_POOLS: "p1=127.0.0.2;p2=192.0.2.77" })),
    ).rejects.toThrow(
      'IP_POOLS: cannot bind source addresses: 192.0.2.77 (pool "p2"): EADDRNOTAVAIL, not an address of this host',
    );
  });
});

let dns: TestDnsServer;
let sink: TestSmtpServer;
const closers: (() => Promise<void>)[] = [];
beforeAll(async () => {
  dns = await startDnsServer({
    records: {
      "dest.test": { MX: [{ preference: 10, exchange: "mx.dest.test" }] },
      "mx.dest.test": { A: ["127.0.0.1"] },
      "v6.test": { MX: [{ preference: 10, exchange: "mx.v6.test" }] },
      "mx.v6.test": { AAAA: ["::1"] },
    },
  });
  sink = await startSinkServer();
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await sink.close();
  await dns.close();
});

function engineWith(settings: IpPoolSettings, extra: { warmup?: { schedule: string; start: string } } = {}) {
  const config = loadIpPoolConfig(settings);
  const sourceAddresses = createSourceAddresses(config);
  const missing: string[] = [];
  const coordinator = createMemoryCoordinator();
  const limits = extra.warmup
    ? createDeliveryLimits({
        warmup: createWarmup({
          coordinator,
          schedule: parseWarmupSchedule(extra.warmup.schedule),
          starts: parseWarmupStart(extra.warmup.start),
          nodeId: "node-pools",
          sourceAddresses: sourceAddresses.addresses,
        }),
      })
    : undefined;
  const engine = createDeliveryEngine({
    heloName: "origin.sender.test",
    smtpPort: sink.port,
    dnsServers: [dns.server],
    verpSecret: "verp-secret-for-ip-pool-tests",
    connectTimeoutMs: 2_000,
    maxConnectionsPerHost: 4,
    allowPrivateMx: true, // loopback stands in for the recipients' MX hosts
    coordinator,
    sourceAddresses,
    onPoolMissing: (pool) => missing.push(pool),
    ...(limits ? { limits } : {}),
  });
  closers.push(async () => {
    await engine.close();
    await coordinator.close();
  });
  return { engine, missing, sourceAddresses };
}

let seq = 0;
function job(ipPool?: string, recipient = `r${seq + 1}@dest.test`): DeliveryJob {
  const messageId = `msg_pool${++seq}`;
  return {
    jobId: `${messageId}.1`,
    messageId,
    tenantId: "t_1",
    attempt: 1,
    recipients: [recipient],
    message: {
      from: { email: "news@sender.test" },
      to: [{ email: recipient }],
      subject: `pool ${seq}`,
      text: "Hello",
      headers: {},
      messageIdHeader: `${messageId}@sender.test`,
    },
    dkim: null,
    ...(ipPool ? { ipPool } : {}),
  };
}

/** Where the server saw each of these jobs' messages come from, and the EHLO name it was given. */
const seen = (jobs: DeliveryJob[]) =>
  jobs.map((j) => {
    const m = sink.messages.find((msg) =>
      msg.raw.toString().includes(`Message-ID: <${j.message.messageIdHeader}>`),
    );
    return m ? `${m.remoteAddress} ${m.clientHostname}` : "not received";
  });

describe("delivery through IP pools", () => {
  it("sends each job from its pool's addresses, in turn, reusing sessions only within the address", async () => {
    const { engine } = engineWith({
      IP_POOLS: "transactional=127.0.0.2,127.0.0.3;marketing=127.0.0.4",
      IP_POOL_HELO_NAMES: "127.0.0.4=mta-marketing.sender.test",
    });
    const connectionsBefore = sink.connections;
    const transactional = [
      job("transactional"),
      job("transactional"),
      job("transactional"),
      job("transactional"),
    ];
    const outcomes = [];
    for (const j of transactional) outcomes.push(...(await engine.deliver(j)));
    expect(outcomes.map((o) => [o.status, o.sourceAddress])).toEqual([
      ["delivered", "127.0.0.2"],
      ["delivered", "127.0.0.3"],
      ["delivered", "127.0.0.2"],
      ["delivered", "127.0.0.3"],
    ]);
    expect(seen(transactional)).toEqual([
      "127.0.0.2 origin.sender.test",
      "127.0.0.3 origin.sender.test",
      "127.0.0.2 origin.sender.test",
      "127.0.0.3 origin.sender.test",
    ]);
    // One session per address, each reused for its second message.
    expect(sink.connections - connectionsBefore).toBe(2);

    // Idle sessions from 127.0.0.2 and .3 are open: the marketing job must not take one.
    const marketing = job("marketing");
    const [m] = await engine.deliver(marketing);
    expect(m).toMatchObject({ status: "delivered", sourceAddress: "127.0.0.4" });
    expect(seen([marketing])).toEqual(["127.0.0.4 mta-marketing.sender.test"]);
    expect(sink.connections - connectionsBefore).toBe(3);

    // No pool named, no default: the system's address (127.0.0.1 towards 127.0.0.1), and no session
    // bound to a pool address is reused for it.
    const plain = job();
    const [p] = await engine.deliver(plain);
    expect(p!.status).toBe("delivered");
    expect(p).not.toHaveProperty("sourceAddress");
    expect(seen([plain])).toEqual(["127.0.0.1 origin.sender.test"]);
    expect(sink.connections - connectionsBefore).toBe(4);
  });

  it("spreads parallel jobs over the pool by connections in progress", async () => {
    const { engine } = engineWith({ IP_POOLS: "spread=127.0.0.5,127.0.0.6" });
    const jobs = Array.from({ length: 6 }, () => job("spread"));
    const outcomes = (await Promise.all(jobs.map((j) => engine.deliver(j)))).flat();
    expect(outcomes.every((o) => o.status === "delivered")).toBe(true);
    const from = seen(jobs).map((s) => s.split(" ")[0]);
    expect(from.filter((a) => a === "127.0.0.5")).toHaveLength(3);
    expect(from.filter((a) => a === "127.0.0.6")).toHaveLength(3);
  });

  it("sends jobs naming no pool from IP_POOL_DEFAULT", async () => {
    const { engine } = engineWith({ IP_POOLS: "main=127.0.0.7;other=127.0.0.8", IP_POOL_DEFAULT: "main" });
    const plain = job();
    const [o] = await engine.deliver(plain);
    expect(o).toMatchObject({ status: "delivered", sourceAddress: "127.0.0.7" });
    expect(seen([plain])).toEqual(["127.0.0.7 origin.sender.test"]);
  });

  it("defers a job for a pool this node lacks, sends nothing, and counts it", async () => {
    const { engine, missing } = engineWith({ IP_POOLS: "transactional=127.0.0.2" });
    const received = sink.messages.length;
    const lost = job("marketing");
    expect(await engine.deliver(lost)).toEqual([
      {
        recipient: lost.recipients[0],
        status: "deferred",
        response: 'IP pool "marketing" is not configured on this delivery node',
        retryAfterMs: POOL_MISSING_RETRY_MS,
      },
    ]);
    expect(missing).toEqual(["marketing"]);
    expect(sink.messages.length).toBe(received);
  });

  it("never falls back to another family: an IPv6-only pool cannot reach an IPv4 MX, and defers", async () => {
    const { engine } = engineWith({ IP_POOLS: "v6only=::1" });
    const received = sink.messages.length;
    const [o] = await engine.deliver(job("v6only"));
    expect(o).toMatchObject({
      status: "deferred",
      response: "no source address of the job's IP pool can reach 127.0.0.1 (IPv4)",
    });
    expect(sink.messages.length).toBe(received);
  });

  it("binds an IPv6 address of a dual-stack pool for an IPv6 MX", async () => {
    const v6 = await startSmtpServer({ host: "::1" });
    closers.push(() => v6.close());
    const config = loadIpPoolConfig({ IP_POOLS: "dual=127.0.0.11,::1" });
    const engine = createDeliveryEngine({
      heloName: "origin.sender.test",
      smtpPort: v6.port,
      dnsServers: [dns.server],
      verpSecret: "verp-secret-for-ip-pool-tests",
      connectTimeoutMs: 2_000,
      maxConnectionsPerHost: 4,
      allowPrivateMx: true,
      sourceAddresses: createSourceAddresses(config),
    });
    closers.push(() => engine.close());
    const [o] = await engine.deliver(job("dual", "six@v6.test"));
    expect(o).toMatchObject({ status: "delivered", sourceAddress: "::1", mxHost: "mx.v6.test" });
    expect(v6.messages.map((m) => m.remoteAddress)).toEqual(["::1"]);
  });

  it("counts warm-up per source address: each address of the pool gets its own allowance", async () => {
    const today = new Date().toISOString().slice(0, 10);
    const { engine } = engineWith(
      { IP_POOLS: "warm=127.0.0.9,127.0.0.10" },
      { warmup: { schedule: "1", start: `*=${today}` } },
    );
    const outcomes = [];
    for (let i = 0; i < 3; i++) outcomes.push(...(await engine.deliver(job("warm"))));
    expect(outcomes.map((o) => [o.status, o.sourceAddress])).toEqual([
      ["delivered", "127.0.0.9"],
      ["delivered", "127.0.0.10"],
      ["deferred", undefined],
    ]);
    expect(outcomes[2]!.response).toMatch(
      /^warm-up allowance for 127\.0\.0\.9 reached: 1 of 1 recipients today/,
    );
  });
});
