/**
 * The check before dispatch in the OriginHub (edge/src/services/suppression-check.ts), over a real
 * /link WebSocket and the real D1: a suppressed recipient gets a `dropped` event with SendGrid's
 * reason and is never in a job; a message with nobody left ends `failed`; the bypass_* settings
 * and `asm` groups decide what applies; when D1 cannot answer the check, nothing is sent and
 * nothing dropped until it can. Also the send path's `asm` checks (400 in SendGrid's shape).
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import { tenantSuppressions } from "../../edge/src/db/suppressions.ts";
import {
  eventually,
  getMessage,
  LinkClient,
  mailBody,
  openLink,
  resetHub,
  sendMail,
  sendOne,
  setupTenant,
  type TenantFixture,
} from "./helpers.ts";

const db = () => createDb(env.DB);
const to = (...emails: string[]) => ({ personalizations: [{ to: emails.map((email) => ({ email })) }] });

let origin: LinkClient | null = null;
let t: TenantFixture;
let group: number;

beforeEach(async () => {
  await resetHub();
  t = await setupTenant();
  const now = Date.now();
  await tenantSuppressions(db(), t.tenantId).addSuppressions("bounces", [
    { email: "bounced@example.net", createdAt: now, reason: "550 5.1.1" },
  ]);
  await tenantSuppressions(db(), t.tenantId).addSuppressions("spam_reports", [
    { email: "spam@example.net", createdAt: now },
  ]);
  await tenantSuppressions(db(), t.tenantId).addSuppressions("invalid_emails", [
    { email: "invalid@example.net", createdAt: now },
  ]);
  await tenantSuppressions(db(), t.tenantId).addSuppressions("blocks", [
    { email: "blocked@example.net", createdAt: now },
  ]);
  await tenantSuppressions(db(), t.tenantId).unsubscribeGlobally("unsub@example.net", now);
  group = (
    await tenantSuppressions(db(), t.tenantId).createGroup(
      { name: "News", description: "", isDefault: false },
      now,
    )
  ).id;
  await tenantSuppressions(db(), t.tenantId).unsubscribeFromGroup(group, "grouped@example.net", now);
  origin = await openLink();
  await origin.hello(10);
});

afterEach(async () => {
  origin?.close();
  origin = null;
  await env.DB.prepare("ALTER TABLE suppressions_held_by_test RENAME TO suppressions")
    .run()
    .catch(() => undefined);
});

async function dropped(id: string, count: number) {
  const m = await eventually(
    () => getMessage(t.liveKey, id),
    (m) => m.events.filter((e) => e.event_type === "dropped").length >= count,
  );
  return m.events.filter((e) => e.event_type === "dropped");
}

describe("suppressed recipients are dropped before dispatch", () => {
  it("drops the suppressed recipients with SendGrid's reasons and sends the rest", async () => {
    const id = await sendOne(
      t.liveKey,
      mailBody(
        t.from,
        to(
          "ok@example.net",
          "Bounced@Example.net",
          "spam@example.net",
          "invalid@example.net",
          "unsub@example.net",
          "grouped@example.net",
          "blocked@example.net",
        ),
      ),
    );
    const [job] = await origin!.jobs(1, 4000);
    // No asm on this message: a group unsubscribe does not apply; blocks never drop.
    expect(job!.recipients.map((r) => r.toLowerCase()).sort()).toEqual([
      "blocked@example.net",
      "grouped@example.net",
      "ok@example.net",
    ]);
    const drops = await dropped(id, 4);
    expect(Object.fromEntries(drops.map((e) => [e.recipient_email, e.metadata["reason"]]))).toEqual({
      "bounced@example.net": "Bounced Address",
      "spam@example.net": "Spam Reporting Address",
      "invalid@example.net": "Invalid",
      "unsub@example.net": "Unsubscribed Address",
    });
  });

  it("a message whose every recipient is suppressed is never dispatched and ends failed", async () => {
    const id = await sendOne(t.liveKey, mailBody(t.from, to("bounced@example.net", "unsub@example.net")));
    const m = await eventually(
      () => getMessage(t.liveKey, id),
      (m) => m.status === "failed",
    );
    expect(m.status).toBe("failed");
    expect(m.error_message).toMatch(/suppressed/);
    expect((await dropped(id, 2)).map((e) => e.recipient_email).sort()).toEqual([
      "bounced@example.net",
      "unsub@example.net",
    ]);
    expect(await origin!.nothing("jobs", 300)).toBe(true);
  });

  it("asm: a group unsubscribe drops mail of that group only", async () => {
    const id = await sendOne(
      t.liveKey,
      mailBody(t.from, { ...to("grouped@example.net", "ok@example.net"), asm: { group_id: group } }),
    );
    const [job] = await origin!.jobs(1, 4000);
    expect(job!.recipients).toEqual(["ok@example.net"]);
    const [drop] = await dropped(id, 1);
    expect(drop!.metadata).toMatchObject({ reason: "Unsubscribed Address", asm_group_id: group });
  });

  it.each([
    [
      { bypass_bounce_management: { enable: true } },
      ["bounced@example.net"],
      ["grouped@example.net", "spam@example.net", "unsub@example.net"],
    ],
    [
      { bypass_spam_management: { enable: true } },
      ["spam@example.net"],
      ["bounced@example.net", "grouped@example.net", "unsub@example.net"],
    ],
    [
      { bypass_unsubscribe_management: { enable: true } },
      ["unsub@example.net"],
      ["bounced@example.net", "grouped@example.net", "spam@example.net"],
    ],
    [
      { bypass_list_management: { enable: true } },
      [
        "bounced@example.net",
        "grouped@example.net",
        "invalid@example.net",
        "spam@example.net",
        "unsub@example.net",
      ],
      [],
    ],
  ])("mail_settings %j sends to %j and drops %j", async (settings, sent, drops) => {
    const all = [
      "bounced@example.net",
      "spam@example.net",
      "unsub@example.net",
      "invalid@example.net",
      "grouped@example.net",
    ];
    const body = mailBody(t.from, { ...to(...all), asm: { group_id: group }, mail_settings: settings });
    const id = await sendOne(t.liveKey, body);
    const [job] = await origin!.jobs(1, 4000);
    expect(job!.recipients.sort()).toEqual([...sent].sort());
    // invalid_emails is bypassed by bypass_list_management only, so it is dropped in the other rows.
    const expectedDrops = [
      ...drops,
      ...(sent.includes("invalid@example.net") ? [] : ["invalid@example.net"]),
    ].sort();
    if (expectedDrops.length > 0)
      expect((await dropped(id, expectedDrops.length)).map((e) => e.recipient_email).sort()).toEqual(
        expectedDrops,
      );
  });

  it("while D1 cannot answer the check nothing is sent or dropped; once it can, the check runs", async () => {
    await env.DB.prepare("ALTER TABLE suppressions RENAME TO suppressions_held_by_test").run();
    const id = await sendOne(t.liveKey, mailBody(t.from, to("ok@example.net", "bounced@example.net")));
    expect(await origin!.nothing("jobs", 800)).toBe(true);
    await env.DB.prepare("ALTER TABLE suppressions_held_by_test RENAME TO suppressions").run();
    const [job] = await origin!.jobs(1, 8000);
    expect(job!.recipients).toEqual(["ok@example.net"]);
    expect((await dropped(id, 1)).map((e) => e.recipient_email)).toEqual(["bounced@example.net"]);
  }, 20_000);
});

describe("mail/send checks asm", () => {
  it.each([
    [{ group_id: 999_999_999 }, "asm.group_id", /valid Group ID on your account. You provided 999999999/],
    [{ group_id: -1 }, "asm.group_id", /valid Group ID/],
    [{ group_id: "x" }, "asm.group_id", /must be an integer/],
    [
      { group_id: 0, groups_to_display: Array.from({ length: 26 }, (_, i) => i) },
      "asm.groups_to_display",
      /limit of 25/,
    ],
  ])("asm %j → 400 on %s", async (asm, field, message) => {
    const res = await sendMail(t.liveKey, mailBody(t.from, { asm }));
    const body = (await res.json()) as { errors: { field: string; message: string }[] };
    expect(res.status).toBe(400);
    expect(body.errors.find((e) => e.field === field)?.message).toMatch(message);
  });

  it("another tenant's group is refused like a made-up one; groups_to_display are checked too", async () => {
    const other = await setupTenant();
    const theirs = (
      await tenantSuppressions(db(), other.tenantId).createGroup(
        { name: "Theirs", description: "", isDefault: false },
        1,
      )
    ).id;
    const res = await sendMail(t.liveKey, mailBody(t.from, { asm: { group_id: theirs } }));
    expect(res.status).toBe(400);
    const res2 = await sendMail(
      t.liveKey,
      mailBody(t.from, { asm: { group_id: group, groups_to_display: [group, theirs] } }),
    );
    const body2 = (await res2.json()) as { errors: { field: string }[] };
    expect(res2.status).toBe(400);
    expect(body2.errors[0]!.field).toBe("asm.groups_to_display");
    const ok = await sendMail(
      t.liveKey,
      mailBody(t.from, { asm: { group_id: group, groups_to_display: [group] } }),
    );
    expect(ok.status).toBe(202);
  });
});
