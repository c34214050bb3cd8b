/**
 * Sandbox vs live (docs/api/sendgrid.md#sandbox-and-live): the key × flag table,
 * what each mode stores, whether anything reaches the OriginHub, and the sender-domain check.
 * No origin is connected in this file, so a live message stays `queued` in the hub's outbox.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import {
  createDomain,
  getMessage,
  mailBody,
  sendMail,
  setupTenant,
  uid,
  type TenantFixture,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

function inOutbox(messageId: string): Promise<boolean> {
  return runInDurableObject(
    hub(),
    (_instance, state) =>
      state.storage.sql.exec("SELECT count(*) AS n FROM outbox WHERE message_id = ?", messageId).one().n ===
      1,
  );
}

let t: TenantFixture;
beforeEach(async () => {
  t = await setupTenant();
});

type Row = { key: "live" | "test"; flag: boolean | undefined; mode: "live" | "sandbox" };
const TABLE: Row[] = [
  { key: "live", flag: undefined, mode: "live" },
  { key: "live", flag: false, mode: "live" },
  { key: "live", flag: true, mode: "sandbox" },
  { key: "test", flag: undefined, mode: "sandbox" },
  { key: "test", flag: false, mode: "sandbox" },
  { key: "test", flag: true, mode: "sandbox" },
];

describe("sandbox vs live table", () => {
  it.each(TABLE)("sg_$key key with sandbox_mode.enable=$flag → $mode", async ({ key, flag, mode }) => {
    const apiKey = key === "live" ? t.liveKey : t.testKey;
    const body = mailBody(
      t.from,
      flag === undefined ? {} : { mail_settings: { sandbox_mode: { enable: flag } } },
    );
    const readyBefore = (await hub().stats()).ready;

    const res = await sendMail(apiKey, body);
    expect(res.status).toBe(202);
    const json = (await res.json()) as { message_id: string };
    expect(Object.keys(json)).toEqual(["message_id"]);
    expect(res.headers.get("x-message-id")).toBe(json.message_id);

    const m = await getMessage(apiKey, json.message_id);
    expect(m.mode).toBe(mode);
    if (mode === "live") {
      expect(m.status).toBe("queued");
      expect(m.events.map((e) => [e.event_type, e.recipient_email])).toEqual([
        ["processed", "rcpt@example.net"],
      ]);
      expect(await inOutbox(json.message_id)).toBe(true);
      expect((await hub().stats()).ready).toBe(readyBefore + 1);
    } else {
      expect(m.status).toBe("sandbox");
      expect(m.events).toEqual([]);
      expect(await inOutbox(json.message_id)).toBe(false);
      expect((await hub().stats()).ready).toBe(readyBefore);
    }
  });
});

describe("sender domain verification", () => {
  it("live from an unverified domain → 403 in SendGrid shape, nothing stored or queued", async () => {
    const domain = `unverified-${uid()}.example.com`;
    await createDomain(t.tenantId, domain);
    const readyBefore = (await hub().stats()).ready;
    const res = await sendMail(t.liveKey, mailBody(`news@${domain}`));
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({
      errors: [
        {
          message: `Sender domain not verified: ${domain}. Add it with POST /api/admin/domains, publish its DNS records, then POST /api/admin/domains/{id}/verify.`,
          field: "from.email",
          help: "https://scaisend.scailabs.ai/docs/concepts/sender-domains",
        },
      ],
    });
    expect(res.headers.get("x-message-id")).toBeNull();
    const stored = await env.DB.prepare(
      "SELECT count(*) AS n FROM messages WHERE tenant_id = ? AND from_email = ?",
    )
      .bind(t.tenantId, `news@${domain}`)
      .first<{ n: number }>();
    expect(stored!.n).toBe(0);
    expect((await hub().stats()).ready).toBe(readyBefore);
  });

  it("live from a domain the tenant never added → 403", async () => {
    const res = await sendMail(t.liveKey, mailBody("someone@not-added.example.org"));
    expect(res.status).toBe(403);
    expect(((await res.json()) as { errors: { message: string }[] }).errors[0]!.message).toMatch(
      /^Sender domain not verified: not-added\.example\.org\./,
    );
  });

  it("live from another tenant's verified domain → 403", async () => {
    const other = await setupTenant();
    const res = await sendMail(t.liveKey, mailBody(other.from));
    expect(res.status).toBe(403);
  });

  it("live from a verified but deactivated domain → 403", async () => {
    await env.DB.prepare("UPDATE sender_domains SET is_active = 0 WHERE id = ?").bind(t.domainId).run();
    expect((await sendMail(t.liveKey, mailBody(t.from))).status).toBe(403);
  });

  it("a personalization-level from on an unverified domain is checked too", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [
          { to: [{ email: "a@example.net" }] },
          { to: [{ email: "b@example.net" }], from: { email: "x@unverified.example.org" } },
        ],
      }),
    );
    expect(res.status).toBe(403);
  });

  it.each([
    ["a test key", "test", undefined],
    ["a live key with sandbox_mode", "live", true],
  ] as const)("sandbox with %s may send from an unverified domain", async (_label, key, flag) => {
    const res = await sendMail(
      key === "test" ? t.testKey : t.liveKey,
      mailBody(
        "hello@never-verified.example.org",
        flag ? { mail_settings: { sandbox_mode: { enable: true } } } : {},
      ),
    );
    expect(res.status).toBe(202);
    const { message_id } = (await res.json()) as { message_id: string };
    expect((await getMessage(t.testKey, message_id)).status).toBe("sandbox");
  });
});

describe("202 bodies", () => {
  it.each([
    ["live", false],
    ["sandbox", true],
  ])(
    "several personalizations → {message_ids} in order and X-Message-Id of the first (%s)",
    async (_mode, sandbox) => {
      const res = await sendMail(
        t.liveKey,
        mailBody(t.from, {
          personalizations: [
            { to: [{ email: "one@example.net" }] },
            { to: [{ email: "two@example.net" }] },
            { to: [{ email: "three@example.net" }] },
          ],
          ...(sandbox ? { mail_settings: { sandbox_mode: { enable: true } } } : {}),
        }),
      );
      expect(res.status).toBe(202);
      const json = (await res.json()) as { message_ids: string[] };
      expect(Object.keys(json)).toEqual(["message_ids"]);
      expect(json.message_ids).toHaveLength(3);
      expect(new Set(json.message_ids).size).toBe(3);
      expect(res.headers.get("x-message-id")).toBe(json.message_ids[0]);
      const recipients = await Promise.all(
        json.message_ids.map(async (id) => (await getMessage(t.liveKey, id)).to_emails),
      );
      expect(recipients).toEqual([["one@example.net"], ["two@example.net"], ["three@example.net"]]);
    },
  );
});
