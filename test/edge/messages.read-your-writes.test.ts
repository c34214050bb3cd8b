/**
 * GET /v3/messages/{id} right after the 202, before the hub shard's catalog flush
 * (docs/api/sendgrid.md#catalog-lag): the shard the id names answers, tenant-checked, with the same
 * body D1 gives once the flush landed. D1 is kept from taking the flush by renaming its `events`
 * table for the duration (the message row cannot be written without its events: one batch).
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { newMessageId } from "../../edge/src/lib/shards.ts";
import { bearer, call, mailBody, sendOne, setupTenant, breakD1, restoreD1 } from "./helpers.ts";

afterEach(restoreD1);

async function catalogued(): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if ((await env.ORIGIN_HUB.getByName("hub-0").flush()).uncatalogued === 0) return;
  }
  throw new Error("hub-0 never finished its catalog flush");
}

const body = (m: Record<string, unknown>) =>
  mailBody(String(m.from), {
    from: { email: m.from, name: "Acme" },
    reply_to: { email: "support@example.com" },
    personalizations: [
      {
        to: [{ email: "To@example.net", name: "To" }],
        cc: [{ email: "cc@example.net" }],
        bcc: [{ email: "bcc@example.net" }],
        custom_args: { order: "42" },
      },
    ],
    subject: "Order 42",
    content: [
      { type: "text/plain", value: "shipped" },
      { type: "text/html", value: "<p>shipped</p>" },
    ],
    headers: { "X-Order": "42" },
    categories: ["orders"],
  });

describe("get /v3/messages/{id} before the catalog flush", () => {
  it("finds the message in its shard, with the same body D1 gives after the flush", async () => {
    const t = await setupTenant();
    await breakD1();
    const id = await sendOne(t.liveKey, body({ from: t.from }));
    expect(await env.DB.prepare("SELECT 1 FROM messages WHERE id = ?").bind(id).first()).toBeNull();
    const before = await call(`/v3/messages/${id}`, { headers: bearer(t.liveKey) });
    expect(before.status).toBe(200);
    const fromHub = (await before.json()) as Record<string, unknown>;
    expect(fromHub).toMatchObject({ id, status: "queued", mode: "live", subject: "Order 42" });

    await restoreD1();
    await catalogued();
    expect(await env.DB.prepare("SELECT 1 AS one FROM messages WHERE id = ?").bind(id).first()).toEqual({
      one: 1,
    });
    const after = await call(`/v3/messages/${id}`, { headers: bearer(t.liveKey) });
    expect(after.status).toBe(200);
    expect(await after.json()).toEqual(fromHub);
  });

  it("another tenant's key gets 404 from the shard too", async () => {
    const a = await setupTenant();
    const b = await setupTenant();
    await breakD1();
    const id = await sendOne(a.liveKey, mailBody(a.from));
    const res = await call(`/v3/messages/${id}`, { headers: bearer(b.liveKey) });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ detail: `Message not found: ${id}` });
    expect((await call(`/v3/messages/${id}`, { headers: bearer(a.liveKey) })).status).toBe(200);
  });

  it("an id naming a shard this deployment does not have → 404 (no object is created for it)", async () => {
    const t = await setupTenant();
    for (const id of [newMessageId({ region: "apac", index: 3 }), newMessageId({ region: null, index: 7 })]) {
      const res = await call(`/v3/messages/${id}`, { headers: bearer(t.liveKey) });
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ detail: `Message not found: ${id}` });
    }
  });
});
