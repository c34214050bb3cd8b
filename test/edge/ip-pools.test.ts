/**
 * IP pools at the edge (docs/api/sendgrid.md#ip-pools): `ip_pool_name` is accepted only when an origin
 * announced that pool in its hello, the hub keeps the announcements in its storage across a restart,
 * a node's next hello replaces its list, the job carries `ipPool`, and the source address an origin
 * reports lands in the delivered event's metadata. Storage is per test file: hub-0 starts knowing no pool.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { LINK_PROTOCOL_VERSION } from "../../shared/link/protocol.ts";
import type { OriginHub } from "../../edge/src/objects/origin-hub.ts";
import {
  getMessage,
  LinkClient,
  linkSettled,
  mailBody,
  openLink,
  resetHub,
  sendMail,
  sendOne,
  setupTenant,
  storedMessageCount,
  uid,
  type TenantFixture,
} from "./helpers.ts";

const HELP = "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send";
const hub = () => env.ORIGIN_HUB.getByName("hub-0");

const unknownPool = (name: string) => ({
  errors: [
    {
      message: `The IP Pool name must be a valid pool name for your account. You provided [${name}].`,
      field: "ip_pool_name",
      help: `${HELP}#ip-pool-name`,
    },
  ],
});

let t: TenantFixture;
beforeAll(async () => {
  t = await setupTenant();
});
// Outbox and links are emptied before each test; the pools the hub learnt stay (the first test runs
// before any hello of this file).
beforeEach(() => resetHub());
const opened: LinkClient[] = [];
afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

/** An origin link that said hello with these pools (capacity 0 unless asked: it takes no jobs). */
async function origin(pools: string[] | undefined, capacity = 0, nodeId = `node-${uid()}`) {
  const link = await openLink();
  opened.push(link);
  link.nodeId = nodeId;
  link.bootId = `boot-${uid()}`;
  link.send({
    type: "hello",
    protocol: LINK_PROTOCOL_VERSION,
    nodeId,
    bootId: link.bootId,
    version: "test",
    capacity,
    ...(pools ? { pools } : {}),
  });
  await link.next("welcome");
  await linkSettled(link);
  return link;
}

describe("ip_pool_name at accept", () => {
  it("is refused with SendGrid's 400 while no origin has announced any pool, and nothing is stored", async () => {
    const before = await storedMessageCount(t.tenantId);
    const res = await sendMail(t.liveKey, mailBody(t.from, { ip_pool_name: "transactional" }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(unknownPool("transactional"));
    expect(await storedMessageCount(t.tenantId)).toBe(before);
  });

  it("is accepted for an announced pool, and the job carries it; an unknown one is still refused", async () => {
    const node = await origin(["transactional", "marketing"], 5);
    const id = await sendOne(t.liveKey, mailBody(t.from, { ip_pool_name: "marketing" }));
    const [job] = await node.jobs(1);
    expect(job).toMatchObject({ messageId: id, ipPool: "marketing" });

    const plain = await sendOne(t.liveKey, mailBody(t.from));
    const [plainJob] = await node.jobs(1);
    expect(plainJob!.messageId).toBe(plain);
    expect(plainJob).not.toHaveProperty("ipPool");

    const res = await sendMail(t.liveKey, mailBody(t.from, { ip_pool_name: "Marketing" }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(unknownPool("Marketing"));
  });

  it("a node's next hello replaces its pools; another node's stay", async () => {
    const nodeId = `node-${uid()}`;
    (await origin(["bulk-a"], 0, nodeId)).close();
    await origin(["bulk-b"]);
    expect((await sendMail(t.liveKey, mailBody(t.from, { ip_pool_name: "bulk-a" }))).status).toBe(202);
    // The same node again (a restart), now without bulk-a.
    await origin(["bulk-c"], 0, nodeId);
    const res = await sendMail(t.liveKey, mailBody(t.from, { ip_pool_name: "bulk-a" }));
    expect(await res.json()).toEqual(unknownPool("bulk-a"));
    expect((await sendMail(t.liveKey, mailBody(t.from, { ip_pool_name: "bulk-b" }))).status).toBe(202);
    expect((await sendMail(t.liveKey, mailBody(t.from, { ip_pool_name: "bulk-c" }))).status).toBe(202);
  });

  it("an announcement survives a hub restart: accepted before any origin reconnects", async () => {
    (await origin(["after-restart"])).close();
    await expect(
      runInDurableObject(hub(), (_instance: OriginHub, state) => {
        state.abort("test: hub restart");
      }),
    ).rejects.toThrow();
    const stats = await hub().stats();
    expect(stats.links).toEqual([]);
    expect((await sendMail(t.liveKey, mailBody(t.from, { ip_pool_name: "after-restart" }))).status).toBe(202);
  });

  it("a replayed Idempotency-Key gets its ids, the pool is checked only for new requests", async () => {
    await origin(["replayed"]);
    const body = mailBody(t.from, { ip_pool_name: "replayed" });
    const key = `idem-${uid()}`;
    const first = await sendMail(t.liveKey, body, { "Idempotency-Key": key });
    expect(first.status).toBe(202);
    const again = await sendMail(t.liveKey, body, { "Idempotency-Key": key });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual(await first.json());
  });
});

describe("dispatch by pool", () => {
  it("hands a pool's job only to a link whose node announced the pool", async () => {
    // More credit than the other: without the pool check the hub would pick this link first.
    const without = await origin([], 10);
    const withPool = await origin(["routed"], 5);
    const id = await sendOne(t.liveKey, mailBody(t.from, { ip_pool_name: "routed" }));
    const [job] = await withPool.jobs(1);
    expect(job).toMatchObject({ messageId: id, ipPool: "routed" });
    await linkSettled(without);
    expect(await without.nothing("jobs", 200)).toBe(true);
  });

  it("keeps a pool's jobs until a node with the pool connects, without holding back the jobs behind them", async () => {
    (await origin(["later"])).close();
    const without = await origin([], 1);
    const waiting = [
      await sendOne(t.liveKey, mailBody(t.from, { ip_pool_name: "later" })),
      await sendOne(t.liveKey, mailBody(t.from, { ip_pool_name: "later" })),
    ];
    const plain = await sendOne(t.liveKey, mailBody(t.from));
    const [first] = await without.jobs(1);
    expect(first!.messageId).toBe(plain);
    expect(first).not.toHaveProperty("ipPool");
    const late = await origin(["later"], 5);
    const jobs = await late.jobs(2);
    expect(jobs.map((j) => j.messageId).sort()).toEqual([...waiting].sort());
    expect(jobs.every((j) => j.ipPool === "later")).toBe(true);
  });
});

describe("the source address of a delivery", () => {
  it("is kept in the delivered event's metadata as source_ip", async () => {
    const node = await origin(["transactional"], 1);
    const id = await sendOne(t.liveKey, mailBody(t.from, { ip_pool_name: "transactional" }));
    const [job] = await node.jobs(1);
    node.send({ type: "ack", jobIds: [job!.jobId] });
    node.send({
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: 1,
      recipients: [
        {
          recipient: "rcpt@example.net",
          status: "delivered",
          smtpCode: 250,
          response: "250 2.0.0 OK",
          mxHost: "mx.example.net",
          sourceAddress: "192.0.2.25",
        },
      ],
    });
    expect(await node.next("resultAck")).toEqual({ type: "resultAck", jobIds: [job!.jobId] });
    const m = await getMessage(t.liveKey, id);
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
    expect(m.events[1]!.metadata).toMatchObject({ mx_host: "mx.example.net", source_ip: "192.0.2.25" });
  });
});
