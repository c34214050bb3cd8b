/**
 * More than one unplaced OriginHub shard (docs/configuration.md: HUB_SHARDS, origins connect to all
 * of them). This suite's bindings come from wrangler.toml (HUB_SHARDS = "1"), so the Worker's own
 * entry point is called with the same bindings but HUB_SHARDS = "3": the send route and the /link
 * route then spread requests over hub-0..hub-2 (one shard per request, named in each message id),
 * and each shard is checked on its own.
 */
import {
  createExecutionContext,
  createScheduledController,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import worker from "../../edge/src/index.ts";
import { hubName, newMessageId, shardFor } from "../../edge/src/lib/shards.ts";
import { STALE_AFTER_MS } from "../../edge/src/services/sweeper.ts";
import { ulid } from "../../shared/ids.ts";
import {
  BASE,
  bearer,
  getMessage,
  LinkClient,
  mailBody,
  setupTenant,
  type TenantFixture,
} from "./helpers.ts";

const SHARDS = 3;
const shardedEnv = { ...env, HUB_SHARDS: String(SHARDS) };
const hub = (shard: number) => env.ORIGIN_HUB.getByName(hubName({ region: null, index: shard }));

/** One request through the Worker's fetch handler with HUB_SHARDS = 3. */
async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch!(new Request(`${BASE}${path}`, init) as never, shardedEnv, ctx);
  await waitOnExecutionContext(ctx);
  return res as unknown as Response;
}

async function openShardLink(shard: number): Promise<LinkClient> {
  const res = await request(`/link?shard=${shard}`, {
    headers: { Upgrade: "websocket", Authorization: `Bearer ${env.ORIGIN_TOKEN}` },
  });
  expect(res.status).toBe(101);
  const ws = res.webSocket;
  if (!ws) throw new Error("no WebSocket in the 101 response");
  ws.accept();
  return new LinkClient(ws);
}

async function send(key: string, body: unknown): Promise<string> {
  const res = await request("/v3/mail/send", {
    method: "POST",
    headers: bearer(key),
    body: JSON.stringify(body),
  });
  const text = await res.text();
  expect(res.status, text).toBe(202);
  return (JSON.parse(text) as { message_id: string }).message_id;
}

function outboxIds(shard: number): Promise<string[]> {
  return runInDurableObject(hub(shard), (_instance, state) =>
    state.storage.sql
      .exec<{ message_id: string }>("SELECT message_id FROM outbox ORDER BY message_id")
      .toArray()
      .map((r) => r.message_id),
  );
}

/** FNV-1a over the id, as shards were chosen before ids named them. */
function legacyShard(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % SHARDS;
}

let t: TenantFixture;
const links: LinkClient[] = [];

beforeAll(async () => {
  t = await setupTenant();
});

afterAll(() => {
  for (const l of links.splice(0)) l.close();
});

describe("HUB_SHARDS = 3", () => {
  it("accepts a link for each shard 0..2 and refuses shard 3", async () => {
    const res = await request("/link?shard=3", {
      headers: { Upgrade: "websocket", Authorization: `Bearer ${env.ORIGIN_TOKEN}` },
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/shard must be an integer from 0 to 2/);
  });

  it("puts each message in the shard its id names, and a link to a shard gets that shard's jobs only", async () => {
    // Send until every shard owns at least one message (ids are random, so the spread is too).
    const byShard = new Map<number, string[]>(Array.from({ length: SHARDS }, (_, s) => [s, []]));
    for (let i = 0; i < 60 && [...byShard.values()].some((ids) => ids.length < 2); i++) {
      const id = await send(t.liveKey, mailBody(t.from, { subject: `sharded ${i}` }));
      const shard = shardFor(id);
      expect(shard?.region).toBeNull();
      byShard.get(shard!.index)!.push(id);
    }
    for (const [shard, ids] of byShard) {
      expect(ids.length, `shard ${shard}`).toBeGreaterThanOrEqual(2);
      // Queued where the id says, and nowhere else.
      expect(await outboxIds(shard)).toEqual([...ids].sort());
      expect(await hub(shard).stats()).toMatchObject({ ready: ids.length, leased: 0 });
    }

    const jobsByShard = new Map<number, DeliveryJob[]>();
    for (let shard = 0; shard < SHARDS; shard++) {
      const link = await openShardLink(shard);
      links.push(link);
      const welcome = await link.hello(100, `node-shard-${shard}`);
      expect(welcome.shard).toBe(shard);
      const expected = byShard.get(shard)!;
      const jobs = await link.jobs(expected.length);
      jobsByShard.set(shard, jobs);
      expect(jobs.map((j) => j.messageId).sort()).toEqual([...expected].sort());
      // The shard handed out everything it had and holds nothing of another shard.
      expect(await hub(shard).stats()).toMatchObject({ ready: 0, leased: expected.length });
    }

    // Each link reports its results to its own shard, which records them.
    for (let shard = 0; shard < SHARDS; shard++) {
      const link = links[shard]!;
      const jobs = jobsByShard.get(shard)!;
      for (const job of jobs) {
        link.send({
          type: "result",
          jobId: job.jobId,
          messageId: job.messageId,
          attempt: job.attempt,
          recipients: job.recipients.map((recipient) => ({
            recipient,
            status: "delivered" as const,
            smtpCode: 250,
            response: "250 OK",
          })),
        });
      }
      const acked: string[] = [];
      while (acked.length < jobs.length) acked.push(...(await link.next("resultAck")).jobIds);
      expect(acked.sort()).toEqual(jobs.map((j) => j.jobId).sort());
      expect(await outboxIds(shard)).toEqual([]);
    }
    for (const ids of byShard.values()) {
      for (const id of ids) expect((await getMessage(t.liveKey, id)).status).toBe("delivered");
    }
  });

  it("the cron sweeper hands a legacy message (an id naming no shard) back to hub FNV-1a(id) mod HUB_SHARDS", async () => {
    // No links: a re-enqueued message stays in its shard's outbox.
    for (const l of links.splice(0)) l.close();
    // Written the way the send path wrote live messages before the hub accepted them: D1 first.
    const id = `msg_${ulid()}`;
    expect(shardFor(id)).toBeNull();
    const old = Date.now() - STALE_AFTER_MS - 60_000;
    await env.DB.batch([
      env.DB.prepare(
        `INSERT INTO messages (id, tenant_id, status, mode, from_email, subject, to_emails, recipients, headers,
           categories, custom_args, message_id_header, created_at, updated_at)
         VALUES (?, ?, 'queued', 'live', ?, 'legacy', '["r@example.net"]',
           '{"to":[{"email":"r@example.net"}],"cc":[],"bcc":[],"replyTo":[]}', '{}', '[]', '{}', ?, ?, ?)`,
      ).bind(id, t.tenantId, t.from, `${id}@${t.domain}`, old, old),
      env.DB.prepare(
        "INSERT INTO message_recipients (message_id, tenant_id, email, kind) VALUES (?, ?, 'r@example.net', 'to')",
      ).bind(id, t.tenantId),
    ]);
    const ctx = createExecutionContext();
    await worker.scheduled!(
      createScheduledController({ cron: "*/5 * * * *", scheduledTime: Date.now() }),
      shardedEnv,
      ctx,
    );
    await waitOnExecutionContext(ctx);

    const shard = legacyShard(id);
    expect(await outboxIds(shard)).toContain(id);
    for (let other = 0; other < SHARDS; other++) {
      if (other !== shard) expect(await outboxIds(other)).not.toContain(id);
    }
  });

  it("ids name the shard they were accepted by, whatever the id's random part", () => {
    for (let index = 0; index < SHARDS; index++) {
      for (let i = 0; i < 50; i++) {
        expect(shardFor(newMessageId({ region: null, index }))).toEqual({ region: null, index });
      }
    }
  });
});
