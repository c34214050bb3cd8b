/**
 * DELETE /v1/messages/{id} on a live email (docs/api/senderkit.md#messages, "Cancel") on the real
 * Worker in workerd: the hub shard decides, so of two concurrent cancels exactly one is 200 and the
 * other 409 not_cancelable naming `canceled`, a repeat is 409 too, while /v3's cancel of the same
 * message stays idempotent (200). Every /v1 answer validated against the OpenAPI document.
 */
import { describe, expect, it } from "vitest";
import { expectMatches } from "../helpers/openapi-edge.ts";
import {
  bearer,
  call,
  createApiKey,
  createDomain,
  createTenant,
  markDomainVerified,
  uid,
} from "./helpers.ts";
import { skKey, v1 } from "./senderkit-templates.helpers.ts";

/** A tenant with a verified sender domain, a live SenderKit key and a /v3 key that may cancel. */
async function liveTenant(): Promise<{ sk: string; v3: string; from: string }> {
  const tenantId = await createTenant();
  const domain = `mail-${uid()}.example.com`;
  await markDomainVerified((await createDomain(tenantId, domain)).id);
  const v3 = await createApiKey(tenantId, { scopes: ["mail.send", "mail.cancel"] });
  return { sk: await skKey(tenantId, "live"), v3: v3.key, from: `sender@${domain}` };
}

/** A live email that stays queued: no origin is linked in this test, so its hub never hands it out. */
async function queuedEmail(sk: string, from: string): Promise<string> {
  const sent = await v1(sk, "/send", {
    method: "POST",
    body: {
      channel: "email",
      to: "rcpt@example.net",
      from,
      content: { subject: "Hello", html: "<p>Hello</p>" },
    },
  });
  expectMatches(sent.status, sent.body, "sendMessage");
  expect([sent.status, sent.body.status]).toEqual([202, "queued"]);
  return sent.body.id as string;
}

describe("DELETE /v1/messages/{id} on a live email", () => {
  it("two concurrent cancels: exactly one 200, the other 409 not_cancelable with status canceled; a repeat is 409", async () => {
    const t = await liveTenant();
    const id = await queuedEmail(t.sk, t.from);
    const answers = await Promise.all([
      v1(t.sk, `/messages/${id}`, { method: "DELETE" }),
      v1(t.sk, `/messages/${id}`, { method: "DELETE" }),
    ]);
    for (const a of answers) expectMatches(a.status, a.body, "cancelMessage");
    const ok = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status === 409);
    expect([ok.length, refused.length]).toEqual([1, 1]);
    expect(ok[0]!.body).toEqual({ id, status: "canceled" });
    expect(refused[0]!.body.error.code).toBe("not_cancelable");
    expect(refused[0]!.body.error.message).toContain("its status is canceled");

    const again = await v1(t.sk, `/messages/${id}`, { method: "DELETE" });
    expectMatches(again.status, again.body, "cancelMessage");
    expect([again.status, again.body.error.code]).toEqual([409, "not_cancelable"]);
    expect(again.body.error.message).toContain("its status is canceled");

    const read = await v1(t.sk, `/messages/${id}`);
    expectMatches(read.status, read.body, "getMessage");
    expect(read.body.status).toBe("canceled");
  });

  it("/v3's cancel stays idempotent: a repeat of a cancel made through /v1 is 200", async () => {
    const t = await liveTenant();
    const id = await queuedEmail(t.sk, t.from);
    const first = await v1(t.sk, `/messages/${id}`, { method: "DELETE" });
    expect(first.status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const res = await call(`/v3/messages/${id}/cancel`, { method: "POST", headers: bearer(t.v3) });
      expect([res.status, await res.json()]).toEqual([200, { message_id: id, status: "cancelled" }]);
    }
    const again = await v1(t.sk, `/messages/${id}`, { method: "DELETE" });
    expect([again.status, again.body.error.code]).toEqual([409, "not_cancelable"]);
  });
});
