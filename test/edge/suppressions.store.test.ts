/**
 * The suppression store (edge/src/db/suppressions.ts) and the `events_suppress_*` triggers of
 * migrations/0006_suppressions.sql, against the real D1 in workerd: every writer of `events` gets
 * its suppression exactly once, through the same insert the hub and the inbound path use
 * (`INSERT … ON CONFLICT DO NOTHING`, so a replayed event adds nothing).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import { resultStatements } from "../../edge/src/db/messages.ts";
import { events, type EventType } from "../../edge/src/db/schema.ts";
import { findSuppressed, tenantSuppressions } from "../../edge/src/db/suppressions.ts";
import { createTenant, uid } from "./helpers.ts";

const db = () => createDb(env.DB);

async function insertEvent(
  tenantId: string,
  type: EventType,
  recipient: string,
  metadata: Record<string, unknown>,
  id = `evt_${uid()}`,
  timestamp = Date.now(),
) {
  await db()
    .insert(events)
    .values({
      id,
      tenantId,
      messageId: `msg_${uid()}`,
      eventType: type,
      recipientEmail: recipient,
      timestamp,
      attempt: 0,
      metadata,
    })
    .onConflictDoNothing();
  return id;
}

async function rows(tenantId: string) {
  const r = await env.DB.prepare(
    "SELECT email, list, reason, status, bounce_type, created_at FROM suppressions WHERE tenant_id = ? ORDER BY list, email",
  )
    .bind(tenantId)
    .all();
  return r.results;
}

describe("events_suppress_* triggers", () => {
  it.each([
    {
      type: "bounce",
      meta: { bounce_type: "hard", reason: "550 5.1.1 User unknown", status: "5.1.1" },
      list: "bounces",
    },
    { type: "bounce", meta: { reason: "550 5.1.1 no such user", status: "5.1.1" }, list: "bounces" },
    {
      type: "bounce",
      meta: { bounce_type: "block", reason: "550 5.7.1 rejected", status: "5.7.1" },
      list: "blocks",
    },
    { type: "blocked", meta: { smtp_response: "554 blocked", status: "5.7.1" }, list: "blocks" },
    { type: "spam_report", meta: { feedback_type: "abuse" }, list: "spam_reports" },
    { type: "unsubscribe", meta: {}, list: "unsubscribes" },
  ] as { type: EventType; meta: Record<string, unknown>; list: string }[])(
    "a $type event ($list) adds exactly one row, a replay nothing",
    async ({ type, meta, list }) => {
      const tenantId = await createTenant();
      const id = await insertEvent(tenantId, type, "Someone@Example.COM", meta, undefined, 1_700_000_000_000);
      await insertEvent(tenantId, type, "Someone@Example.COM", meta, id, 1_700_000_000_000); // replay: same id
      const got = await rows(tenantId);
      expect(got).toHaveLength(1);
      expect(got[0]).toMatchObject({ email: "someone@example.com", list, created_at: 1_700_000_000_000 });
      if (list === "bounces" || list === "blocks") {
        expect(got[0]!["reason"]).toBe((meta["reason"] ?? meta["smtp_response"]) as string);
        expect(got[0]!["status"]).toBe(meta["status"]);
      }
    },
  );

  it("through the hub's own result write (INSERT … SELECT FROM json_each … ON CONFLICT DO NOTHING): once, and a replay after the address was removed does not bring it back", async () => {
    const tenantId = await createTenant();
    const messageId = `msg_${uid()}`;
    const bounce = {
      id: `evt_${uid()}`,
      tenantId,
      messageId,
      eventType: "bounce" as const,
      recipientEmail: "gone@example.com",
      timestamp: 5_000,
      attempt: 1,
      metadata: {
        smtp_response: "550 5.1.1 User unknown",
        status: "5.1.1",
        bounce_type: "hard",
        reason: "550 5.1.1 User unknown",
      },
    };
    const write = () =>
      env.DB.batch(
        resultStatements(env.DB, [
          {
            messageId,
            now: 5_000,
            events: [bounce],
            recipientStatuses: [],
            status: "bounced",
            nextAttemptAt: null,
          },
        ]),
      );
    await write();
    expect(await rows(tenantId)).toEqual([
      {
        email: "gone@example.com",
        list: "bounces",
        reason: "550 5.1.1 User unknown",
        status: "5.1.1",
        bounce_type: "hard",
        created_at: 5_000,
      },
    ]);
    // The tenant removes it; the hub then replays the same flush (after a restart, say).
    expect(await tenantSuppressions(db(), tenantId).deleteSuppressions("bounces", ["gone@example.com"])).toBe(
      1,
    );
    await write();
    expect(await rows(tenantId)).toEqual([]);
  });

  it("a soft bounce, a delivered and a dropped event suppress nothing", async () => {
    const tenantId = await createTenant();
    await insertEvent(tenantId, "bounce", "a@example.com", {
      bounce_type: "soft",
      reason: "452 mailbox full",
    });
    await insertEvent(tenantId, "delivered", "b@example.com", { smtp_response: "250 ok" });
    await insertEvent(tenantId, "dropped", "c@example.com", { reason: "Bounced Address" });
    expect(await rows(tenantId)).toEqual([]);
  });

  it("a second, later bounce refreshes the row (still one); an older one does not", async () => {
    const tenantId = await createTenant();
    await insertEvent(
      tenantId,
      "bounce",
      "x@example.com",
      { reason: "first", status: "5.1.1" },
      undefined,
      2_000,
    );
    await insertEvent(
      tenantId,
      "bounce",
      "x@example.com",
      { reason: "second", status: "5.1.2" },
      undefined,
      3_000,
    );
    await insertEvent(
      tenantId,
      "bounce",
      "x@example.com",
      { reason: "older", status: "5.0.0" },
      undefined,
      1_000,
    );
    const got = await rows(tenantId);
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ reason: "second", status: "5.1.2", created_at: 3_000 });
  });

  it("group_unsubscribe adds to the tenant's own group only; group_resubscribe removes", async () => {
    const a = await createTenant();
    const b = await createTenant();
    const ga = await tenantSuppressions(db(), a).createGroup(
      { name: "News", description: "weekly", isDefault: false },
      1,
    );
    // b names a's group: nothing happens (the trigger selects the group with b's tenant id).
    await insertEvent(b, "group_unsubscribe", "u@example.com", { asm_group_id: ga.id });
    expect(await tenantSuppressions(db(), b).groupSuppressionsOf("u@example.com")).toEqual([]);
    expect(await tenantSuppressions(db(), a).groupSuppressionsOf("u@example.com")).toEqual([]);
    await insertEvent(a, "group_unsubscribe", "U@example.com", { asm_group_id: ga.id });
    await insertEvent(a, "group_unsubscribe", "u@example.com", { asm_group_id: ga.id });
    expect(await tenantSuppressions(db(), a).groupSuppressionsOf("u@example.com")).toEqual([ga.id]);
    await insertEvent(a, "group_resubscribe", "u@example.com", { asm_group_id: ga.id });
    expect(await tenantSuppressions(db(), a).groupSuppressionsOf("u@example.com")).toEqual([]);
  });
});

describe("the store's functions for the unsubscribe page", () => {
  it("unsubscribes globally and from groups, resubscribes, lists groups for the page", async () => {
    const t = await createTenant();
    const other = await createTenant();
    const g1 = await tenantSuppressions(db(), t).createGroup(
      { name: "Marketing", description: "offers", isDefault: false },
      1,
    );
    const g2 = await tenantSuppressions(db(), t).createGroup(
      { name: "Product", description: "updates", isDefault: false },
      1,
    );
    const foreign = await tenantSuppressions(db(), other).createGroup(
      { name: "Theirs", description: "", isDefault: false },
      1,
    );

    await tenantSuppressions(db(), t).unsubscribeGlobally("Reader@Example.com", 5_000);
    await tenantSuppressions(db(), t).unsubscribeGlobally("reader@example.com", 6_000);
    expect(
      (await tenantSuppressions(db(), t).getSuppression("unsubscribes", "READER@example.com"))?.createdAt,
    ).toBe(5_000);
    expect(
      await tenantSuppressions(db(), other).getSuppression("unsubscribes", "reader@example.com"),
    ).toBeUndefined();

    expect(await tenantSuppressions(db(), t).unsubscribeFromGroup(g2.id, "reader@example.com", 7_000)).toBe(
      true,
    );
    expect(await tenantSuppressions(db(), t).unsubscribeFromGroup(g1.id, "reader@example.com", 7_000)).toBe(
      true,
    );
    expect(
      await tenantSuppressions(db(), t).unsubscribeFromGroup(foreign.id, "reader@example.com", 7_000),
    ).toBe(false);
    expect(await tenantSuppressions(db(), t).groupSuppressionsOf("reader@example.com")).toEqual([
      g1.id,
      g2.id,
    ]);
    expect(await tenantSuppressions(db(), t).resubscribeToGroup(g1.id, "reader@example.com")).toBe(true);
    expect(await tenantSuppressions(db(), t).resubscribeToGroup(g1.id, "reader@example.com")).toBe(false);
    expect(await tenantSuppressions(db(), t).groupSuppressionsOf("reader@example.com")).toEqual([g2.id]);

    expect(await tenantSuppressions(db(), t).listGroupsForPage([g2.id, foreign.id, g1.id])).toEqual([
      { id: g2.id, name: "Product", description: "updates" },
      { id: g1.id, name: "Marketing", description: "offers" },
    ]);
  });

  it("findSuppressed: one statement, hits per tenant, blocks do not drop", async () => {
    const t = await createTenant();
    const other = await createTenant();
    const g = await tenantSuppressions(db(), t).createGroup(
      { name: "G", description: "", isDefault: false },
      1,
    );
    await tenantSuppressions(db(), t).addSuppressions("bounces", [{ email: "b@x.test", createdAt: 1 }]);
    await tenantSuppressions(db(), t).addSuppressions("blocks", [{ email: "blk@x.test", createdAt: 1 }]);
    await tenantSuppressions(db(), t).addSuppressions("invalid_emails", [
      { email: "inv@x.test", createdAt: 1 },
    ]);
    await tenantSuppressions(db(), other).addSuppressions("spam_reports", [
      { email: "s@x.test", createdAt: 1 },
    ]);
    await tenantSuppressions(db(), t).unsubscribeFromGroup(g.id, "grp@x.test", 1);
    const { hits } = await findSuppressed(env.DB, [
      { tenantId: t, email: "B@x.test" },
      { tenantId: t, email: "blk@x.test" },
      { tenantId: t, email: "inv@x.test" },
      { tenantId: t, email: "s@x.test" },
      { tenantId: other, email: "s@x.test" },
      { tenantId: t, email: "grp@x.test" },
      { tenantId: t, email: "clean@x.test" },
    ]);
    const seen = hits.map(
      (h) => `${h.tenantId === t ? "t" : "o"}:${h.email}:${h.list ?? `group ${h.groupId === g.id}`}`,
    );
    expect(seen.sort()).toEqual([
      "o:s@x.test:spam_reports",
      "t:b@x.test:bounces",
      "t:grp@x.test:group true",
      "t:inv@x.test:invalid_emails",
    ]);
  });
});
