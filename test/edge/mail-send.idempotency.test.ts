/**
 * `Idempotency-Key` on POST /v3/mail/send (docs/api/sendgrid.md#idempotency-key): per tenant, 24 h,
 * kept by the hub shard with the accepted ids and a hash of the body. A retry gets the original 202
 * and ids; concurrent duplicates create one set of messages; another body under the key is a 422.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { IDEMPOTENCY_TTL_MS } from "../../edge/src/objects/origin-hub.ts";
import { mailBody, sendMail, setupTenant, uid } from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

function outboxCount(ids: string[]): Promise<number> {
  return runInDurableObject(hub(), (_instance, state) =>
    ids.reduce(
      (n, id) => n + state.storage.sql.exec("SELECT 1 FROM outbox WHERE message_id = ?", id).toArray().length,
      0,
    ),
  );
}

function tenantOutbox(tenantId: string): Promise<number> {
  return runInDurableObject(
    hub(),
    (_instance, state) =>
      state.storage.sql
        .exec<{ n: number }>("SELECT count(*) AS n FROM outbox WHERE tenant_id = ?", tenantId)
        .one().n,
  );
}

const two = (from: string) =>
  mailBody(from, {
    personalizations: [{ to: [{ email: "a@example.net" }] }, { to: [{ email: "b@example.net" }] }],
  });

describe("post /v3/mail/send with Idempotency-Key", () => {
  it("a retry gets the original 202 body and ids, and creates nothing", async () => {
    const t = await setupTenant();
    const key = `order-${uid()}`;
    const first = await sendMail(t.liveKey, two(t.from), { "Idempotency-Key": key });
    expect(first.status).toBe(202);
    const firstBody = (await first.json()) as { message_ids: string[] };
    expect(first.headers.get("idempotent-replayed")).toBeNull();

    const retry = await sendMail(t.liveKey, two(t.from), { "Idempotency-Key": key });
    expect(retry.status).toBe(202);
    expect(await retry.json()).toEqual(firstBody);
    expect(retry.headers.get("x-message-id")).toBe(firstBody.message_ids[0]);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(await tenantOutbox(t.tenantId)).toBe(2);
  });

  it("concurrent duplicates create one set of messages", async () => {
    const t = await setupTenant();
    const key = `burst-${uid()}`;
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => sendMail(t.liveKey, two(t.from), { "Idempotency-Key": key })),
    );
    const bodies = await Promise.all(
      answers.map(async (r) => {
        expect(r.status).toBe(202);
        return ((await r.json()) as { message_ids: string[] }).message_ids;
      }),
    );
    for (const ids of bodies) expect(ids).toEqual(bodies[0]);
    expect(answers.filter((r) => r.headers.get("idempotent-replayed") === null)).toHaveLength(1);
    expect(await tenantOutbox(t.tenantId)).toBe(2);
    expect(await outboxCount(bodies[0]!)).toBe(2);
  });

  it("another body under the same key → 422 in SendGrid's shape, nothing created", async () => {
    const t = await setupTenant();
    const key = `k-${uid()}`;
    expect((await sendMail(t.liveKey, mailBody(t.from), { "Idempotency-Key": key })).status).toBe(202);
    const res = await sendMail(t.liveKey, mailBody(t.from, { subject: "Changed" }), {
      "Idempotency-Key": key,
    });
    expect(res.status).toBe(422);
    expect(await res.json()).toEqual({
      errors: [
        {
          message:
            "This Idempotency-Key was already used in the last 24 hours with a different request body; send the same body to get the original response, or use a new key for a new request.",
          field: "Idempotency-Key",
          help: null,
        },
      ],
    });
    expect(res.headers.get("x-message-id")).toBeNull();
    expect(await tenantOutbox(t.tenantId)).toBe(1);
  });

  it("keys are per tenant: two tenants may use the same key", async () => {
    const a = await setupTenant();
    const b = await setupTenant();
    const key = `shared-${uid()}`;
    const ra = await sendMail(a.liveKey, mailBody(a.from), { "Idempotency-Key": key });
    const rb = await sendMail(b.liveKey, mailBody(b.from), { "Idempotency-Key": key });
    expect([ra.status, rb.status]).toEqual([202, 202]);
    const [ia, ib] = [
      (await ra.json()) as { message_id: string },
      (await rb.json()) as { message_id: string },
    ];
    expect(ia.message_id).not.toBe(ib.message_id);
    expect(rb.headers.get("idempotent-replayed")).toBeNull();
  });

  it("after 24 hours the key is forgotten and a request with it creates new messages", async () => {
    const t = await setupTenant();
    const key = `old-${uid()}`;
    const first = (await (
      await sendMail(t.liveKey, mailBody(t.from), { "Idempotency-Key": key })
    ).json()) as {
      message_id: string;
    };
    await runInDurableObject(hub(), (_instance, state) => {
      state.storage.sql.exec(
        "UPDATE idempotency SET created_at = created_at - ? WHERE tenant_id = ? AND key = ?",
        IDEMPOTENCY_TTL_MS,
        t.tenantId,
        key,
      );
    });
    const res = await sendMail(t.liveKey, mailBody(t.from, { subject: "new day" }), {
      "Idempotency-Key": key,
    });
    expect(res.status).toBe(202);
    const second = (await res.json()) as { message_id: string };
    expect(second.message_id).not.toBe(first.message_id);
  });

  it("a key that is not 1–255 printable ASCII characters → 400 in SendGrid's shape", async () => {
    const t = await setupTenant();
    for (const key of ["has space", "x".repeat(256), "é"]) {
      const res = await sendMail(t.liveKey, mailBody(t.from), { "Idempotency-Key": key });
      expect(res.status, key).toBe(400);
      expect(await res.json()).toEqual({
        errors: [
          {
            message: "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces.",
            field: "Idempotency-Key",
            help: null,
          },
        ],
      });
    }
  });
});
