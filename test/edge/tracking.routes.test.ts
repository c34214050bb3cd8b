/**
 * The public /t/* routes in workerd (edge/src/surfaces/tracking): the pixel's bytes and headers, the
 * click's 302 and its refusals, tampered (400) and unknown (404) tokens, the events they record in
 * D1 after the answer (waitUntil) with stable ids, the machine-open flag, the unsubscribe page and
 * its POST actions (the suppression is in D1 before the answer), the RFC 8058 one-click POST, the
 * tenant tracking defaults, and the key and merged settings the link hands to origins.
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { tenantSuppressions } from "../../edge/src/db/suppressions.ts";
import { createDb } from "../../edge/src/db/client.ts";
import {
  base64url,
  createTrackingSigner,
  deriveTrackingKey,
  type TrackingSigner,
} from "../../shared/tracking/token.ts";
import {
  bearer,
  call,
  createApiKey,
  createTenant,
  eventually,
  mailBody,
  openLink,
  operatorHeaders,
  resetHub,
  sendOne,
  setupTenant,
  uid,
  type LinkClient,
} from "./helpers.ts";

let signer: TrackingSigner;
let key: Uint8Array<ArrayBuffer>;
beforeAll(async () => {
  key = await deriveTrackingKey(env.TRACKING_SECRET);
  signer = createTrackingSigner(key);
});

interface EventRow {
  id: string;
  event_type: string;
  recipient_email: string;
  tenant_id: string;
  metadata: string;
}
const eventsOf = async (messageId: string) =>
  (
    await env.DB.prepare("SELECT * FROM events WHERE message_id = ? ORDER BY timestamp, id")
      .bind(messageId)
      .all<EventRow>()
  ).results;
/** Events are written after the answer (waitUntil): poll for them. */
const eventsEventually = (messageId: string, n: number) =>
  eventually(
    () => eventsOf(messageId),
    (rows) => rows.length >= n,
  );

const msgId = () => `msg_${uid().toUpperCase()}`;

describe("GET /t/o/{token}.gif", () => {
  it("answers the 42-byte transparent GIF with no-cache headers and records one open per hit window", async () => {
    const tenantId = await createTenant();
    const messageId = msgId();
    const token = await signer.sign("open", { tenantId, messageId, recipient: "Ann@Example.net" });
    const res = await call(`/t/o/${token}.gif`, {
      headers: {
        "user-agent": "Mozilla/5.0 (Macintosh) Thunderbird/128",
        "cf-connecting-ip": "198.51.100.7",
      },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/gif");
    expect(res.headers.get("cache-control")).toBe("private, no-cache, no-store, must-revalidate");
    expect(res.headers.get("pragma")).toBe("no-cache");
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes.length).toBe(42);
    expect(new TextDecoder().decode(bytes.subarray(0, 6))).toBe("GIF89a");
    expect([bytes[6], bytes[7], bytes[8], bytes[9]]).toEqual([1, 0, 1, 0]); // 1×1
    expect(bytes[bytes.length - 1]).toBe(0x3b); // trailer

    const rows = await eventsEventually(messageId, 1);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      event_type: "open",
      tenant_id: tenantId,
      recipient_email: "ann@example.net",
    });
    expect(rows[0]!.id).toMatch(/^evt_[0-9A-Z]{26}$/);
    expect(JSON.parse(rows[0]!.metadata)).toEqual({
      user_agent: "Mozilla/5.0 (Macintosh) Thunderbird/128",
      ip: "198.51.100.7",
      machine_open: false,
    });
    // The same pixel again within the window: the same event id, nothing new.
    expect((await call(`/t/o/${token}.gif`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect(await eventsOf(messageId)).toHaveLength(1);
  });

  it("flags Apple Mail Privacy Protection and Google's image proxy as machine opens", async () => {
    const tenantId = await createTenant();
    for (const [ua, ip, proxy] of [
      ["Mozilla/5.0", "203.0.113.9", "apple_mpp"],
      [
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "66.249.84.1",
        "google_image_proxy",
      ],
    ] as const) {
      const messageId = msgId();
      const token = await signer.sign("open", { tenantId, messageId, recipient: "a@example.net" });
      expect(
        (await call(`/t/o/${token}.gif`, { headers: { "user-agent": ua, "cf-connecting-ip": ip } })).status,
      ).toBe(200);
      const [row] = await eventsEventually(messageId, 1);
      expect(JSON.parse(row!.metadata)).toMatchObject({ machine_open: true, proxy });
    }
  });

  it("refuses tampered and cross-tenant tokens with 400 and non-tokens with 404, recording nothing", async () => {
    const tenantId = await createTenant();
    const messageId = msgId();
    const token = await signer.sign("open", { tenantId, messageId, recipient: "a@example.net" });
    const [, tag] = token.split(".");
    const otherTenant = base64url(
      new TextEncoder().encode(JSON.stringify(["o", "tnt_other", messageId, "a@example.net"])),
    );
    const res400 = await call(`/t/o/${otherTenant}.${tag}.gif`);
    expect(res400.status).toBe(400);
    expect(((await res400.json()) as { detail: string }).detail).toMatch(/signature/);
    const forged = await createTrackingSigner(await deriveTrackingKey("x".repeat(40))).sign("open", {
      tenantId,
      messageId,
      recipient: "a@example.net",
    });
    expect((await call(`/t/o/${forged}.gif`)).status).toBe(400);
    expect((await call(`/t/o/not-a-token.gif`)).status).toBe(404);
    expect((await call(`/t/o/${token}`)).status).toBe(404);
    const click = await signer.sign(
      "click",
      { tenantId, messageId, recipient: "a@example.net" },
      "https://x.example/",
    );
    expect((await call(`/t/o/${click}.gif`)).status).toBe(404);
    await new Promise((r) => setTimeout(r, 200));
    expect(await eventsOf(messageId)).toHaveLength(0);
  });
});

describe("GET /t/c/{token}", () => {
  it("302s to the signed URL and records the click with url, user agent and ip", async () => {
    const tenantId = await createTenant();
    const messageId = msgId();
    const url = "https://shop.example.com/p?id=7&x=%20y";
    const token = await signer.sign("click", { tenantId, messageId, recipient: "a@example.net" }, url);
    const res = await call(`/t/c/${token}?u=${encodeURIComponent(url)}`, {
      redirect: "manual",
      headers: { "user-agent": "UA/1", "cf-connecting-ip": "192.0.2.1" },
    });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe(url);
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    const [row] = await eventsEventually(messageId, 1);
    expect(row).toMatchObject({ event_type: "click", recipient_email: "a@example.net" });
    expect(JSON.parse(row!.metadata)).toEqual({ url, user_agent: "UA/1", ip: "192.0.2.1" });
  });

  it("redirects to a link with non-ASCII characters, percent-encoded (and its host in punycode)", async () => {
    const tenantId = await createTenant();
    const url = "https://bücher.example/straße?q=€";
    const token = await signer.sign(
      "click",
      { tenantId, messageId: msgId(), recipient: "a@example.net" },
      url,
    );
    const res = await call(`/t/c/${token}?u=${encodeURIComponent(url)}`, { redirect: "manual" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("https://xn--bcher-kva.example/stra%C3%9Fe?q=%E2%82%AC");
  });

  it("cannot be turned into a redirect elsewhere: another u, a missing u, a non-http u are 400; a non-token 404", async () => {
    const tenantId = await createTenant();
    const messageId = msgId();
    const url = "https://shop.example.com/p";
    const token = await signer.sign("click", { tenantId, messageId, recipient: "a@example.net" }, url);
    for (const u of ["https://evil.example/", "javascript:alert(1)", `${url}?x`, "//evil.example"]) {
      const res = await call(`/t/c/${token}?u=${encodeURIComponent(u)}`, { redirect: "manual" });
      expect(res.status, u).toBe(400);
      expect(res.headers.get("location")).toBeNull();
    }
    expect((await call(`/t/c/${token}`, { redirect: "manual" })).status).toBe(400);
    expect((await call(`/t/c/garbage?u=${encodeURIComponent(url)}`, { redirect: "manual" })).status).toBe(
      404,
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(await eventsOf(messageId)).toHaveLength(0);
  });
});

describe("/t/u/{token}: the unsubscribe page and its POSTs", () => {
  const db = () => createDb(env.DB);

  it("GET shows the page in the tenant's name, escaped, with the message's groups", async () => {
    const tenantId = await createTenant(`Acme <script>alert(1)</script> & Co ${uid()}`);
    const g1 = await tenantSuppressions(db(), tenantId).createGroup(
      { name: "Newsletter <b>", description: "Weekly news", isDefault: false },
      Date.now(),
    );
    const g2 = await tenantSuppressions(db(), tenantId).createGroup(
      { name: "Offers", description: "", isDefault: false },
      Date.now(),
    );
    const token = await signer.sign("unsubscribe", {
      tenantId,
      messageId: msgId(),
      recipient: "a@example.net",
      asmGroupId: g1.id,
      groupsToDisplay: [g1.id, g2.id],
    });
    const res = await call(`/t/u/${token}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain("Acme &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co");
    expect(html).not.toContain("<script>");
    expect(html).toContain("Newsletter &lt;b&gt;");
    expect(html).toContain(`name="group_id" value="${g1.id}"`);
    expect(html).toContain(`name="group_id" value="${g2.id}"`);
    expect(html).toContain('value="unsubscribe_all"');
    expect((await call(`/t/u/garbage`)).status).toBe(404);
    const [c, tag] = token.split(".");
    expect((await call(`/t/u/${c}x.${tag}`)).status).toBe(404);
  });

  it("POST unsubscribe_all puts the address on the global list before answering and records the event", async () => {
    const tenantId = await createTenant();
    const messageId = msgId();
    const token = await signer.sign("unsubscribe", {
      tenantId,
      messageId,
      recipient: "Ann@Example.net",
      asmGroupId: null,
      groupsToDisplay: [],
    });
    const res = await call(`/t/u/${token}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "action=unsubscribe_all",
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("is unsubscribed from all email");
    const row = await env.DB.prepare("SELECT list FROM suppressions WHERE tenant_id = ? AND email = ?")
      .bind(tenantId, "ann@example.net")
      .first<{ list: string }>();
    expect(row?.list).toBe("unsubscribes");
    const [ev] = await eventsEventually(messageId, 1);
    expect(ev).toMatchObject({ event_type: "unsubscribe", recipient_email: "ann@example.net" });
    // The page now says so.
    expect(await (await call(`/t/u/${token}`)).text()).toContain("is unsubscribed from all email");
  });

  it("POST unsubscribe_group / resubscribe_group change only the groups the message offers", async () => {
    const tenantId = await createTenant();
    const g = await tenantSuppressions(db(), tenantId).createGroup(
      { name: "Digest", description: "", isDefault: false },
      Date.now(),
    );
    const other = await tenantSuppressions(db(), tenantId).createGroup(
      { name: "Other", description: "", isDefault: false },
      Date.now(),
    );
    const messageId = msgId();
    const token = await signer.sign("unsubscribe", {
      tenantId,
      messageId,
      recipient: "b@example.net",
      asmGroupId: g.id,
      groupsToDisplay: [],
    });
    const post = (body: string) =>
      call(`/t/u/${token}`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body,
      });
    const inGroup = () =>
      env.DB.prepare(
        "SELECT count(*) AS n FROM asm_group_suppressions WHERE tenant_id = ? AND group_id = ? AND email = ?",
      )
        .bind(tenantId, g.id, "b@example.net")
        .first<{ n: number }>();

    expect((await post(`action=unsubscribe_group&group_id=${g.id}`)).status).toBe(200);
    expect((await inGroup())?.n).toBe(1);
    expect((await post(`action=unsubscribe_group&group_id=${other.id}`)).status).toBe(400);
    expect((await post(`action=unsubscribe_group`)).status).toBe(400);
    expect((await post(`action=nonsense`)).status).toBe(400);
    const res = await post(`action=resubscribe_group&group_id=${g.id}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("is subscribed again to: Digest");
    expect((await inGroup())?.n).toBe(0);
    const rows = await eventsEventually(messageId, 2);
    expect(rows.map((r) => r.event_type).sort()).toEqual(["group_resubscribe", "group_unsubscribe"]);
    for (const r of rows) expect(JSON.parse(r.metadata)).toMatchObject({ asm_group_id: g.id });
  });

  it("the RFC 8058 one-click POST unsubscribes (globally, or from the message's group) before answering", async () => {
    const tenantId = await createTenant();
    const messageId = msgId();
    const token = await signer.sign("unsubscribe", {
      tenantId,
      messageId,
      recipient: "c@example.net",
      asmGroupId: null,
      groupsToDisplay: [],
    });
    const res = await call(`/t/u/${token}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
    });
    expect(res.status).toBe(200);
    const row = await env.DB.prepare("SELECT list FROM suppressions WHERE tenant_id = ? AND email = ?")
      .bind(tenantId, "c@example.net")
      .first<{ list: string }>();
    expect(row?.list).toBe("unsubscribes");
    const [ev] = await eventsEventually(messageId, 1);
    expect(JSON.parse(ev!.metadata)).toMatchObject({ one_click: true });

    const g = await tenantSuppressions(db(), tenantId).createGroup(
      { name: "G", description: "", isDefault: false },
      Date.now(),
    );
    const grouped = await signer.sign("unsubscribe", {
      tenantId,
      messageId,
      recipient: "d@example.net",
      asmGroupId: g.id,
      groupsToDisplay: [],
    });
    const fd = new FormData();
    fd.set("List-Unsubscribe", "One-Click");
    expect((await call(`/t/u/${grouped}`, { method: "POST", body: fd })).status).toBe(200);
    const inGroup = await env.DB.prepare(
      "SELECT count(*) AS n FROM asm_group_suppressions WHERE tenant_id = ? AND email = ?",
    )
      .bind(tenantId, "d@example.net")
      .first<{ n: number }>();
    expect(inGroup?.n).toBe(1);
    const global = await env.DB.prepare(
      "SELECT count(*) AS n FROM suppressions WHERE tenant_id = ? AND email = ?",
    )
      .bind(tenantId, "d@example.net")
      .first<{ n: number }>();
    expect(global?.n).toBe(0);
    // A tampered one-click changes nothing.
    const [c, tag] = token.split(".");
    const swapped = base64url(
      new TextEncoder().encode(JSON.stringify(["u", tenantId, messageId, "e@example.net", null, []])),
    );
    expect(c).not.toBe(swapped);
    const bad = await call(`/t/u/${swapped}.${tag}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "List-Unsubscribe=One-Click",
    });
    expect(bad.status).toBe(400);
    const none = await env.DB.prepare(
      "SELECT count(*) AS n FROM suppressions WHERE tenant_id = ? AND email = ?",
    )
      .bind(tenantId, "e@example.net")
      .first<{ n: number }>();
    expect(none?.n).toBe(0);
  });
});

describe("tenant tracking defaults: GET/PUT /api/admin/tenants/{id}/tracking", () => {
  it("starts at the documented defaults; PUT is partial and additive; bad input 422; scope and tenant checked", async () => {
    const tenantId = await createTenant();
    const path = `/api/admin/tenants/${tenantId}/tracking`;
    const get = async (headers = operatorHeaders()) => call(path, { headers });
    expect(await (await get()).json()).toEqual({
      data: {
        open_tracking_enabled: true,
        click_tracking_enabled: true,
        click_tracking_enable_text: false,
        subscription_tracking_enabled: false,
        ganalytics_enabled: false,
        image_embed_mode: "proxy",
      },
    });
    const put = (body: unknown, headers = operatorHeaders()) =>
      call(path, { method: "PUT", headers, body: JSON.stringify(body) });
    expect((await put({ click_tracking_enabled: false })).status).toBe(200);
    const after = (await (await put({ subscription_tracking_enabled: true })).json()) as {
      data: Record<string, boolean>;
    };
    expect(after.data).toMatchObject({
      click_tracking_enabled: false,
      subscription_tracking_enabled: true,
      open_tracking_enabled: true,
    });
    // The admin API's validation errors are FastAPI's 422 with {detail: [{loc, msg, type}]}.
    const wrongType = await put({ open_tracking_enabled: "yes" });
    expect(wrongType.status).toBe(422);
    expect(JSON.stringify(await wrongType.json())).toContain("open_tracking_enabled");
    expect((await put({ image_embed: "cid" })).status).toBe(422);

    const own = await createApiKey(tenantId, { scopes: ["admin.settings"] });
    expect((await get(bearer(own.key))).status).toBe(200);
    const noScope = await createApiKey(tenantId, { scopes: ["mail.send"] });
    expect((await get(bearer(noScope.key))).status).toBe(403);
    const otherTenant = await createTenant();
    const foreign = await createApiKey(otherTenant, { scopes: ["admin.settings"] });
    expect((await get(bearer(foreign.key))).status).toBe(404);
    expect((await put({ open_tracking_enabled: false }, bearer(foreign.key))).status).toBe(404);
    expect((await call(`/api/admin/tenants/tnt_nope/tracking`, { headers: operatorHeaders() })).status).toBe(
      404,
    );
  });
});

describe("the link: the welcome's key and the jobs' merged settings", () => {
  let link: LinkClient | null = null;
  afterEach(async () => {
    link?.close();
    link = null;
    await resetHub();
  });

  it("hands origins the derived key (never the secret) and each job the defaults merged with the request", async () => {
    const t = await setupTenant();
    await call(`/api/admin/tenants/${t.tenantId}/tracking`, {
      method: "PUT",
      headers: operatorHeaders(),
      body: JSON.stringify({ click_tracking_enable_text: true }),
    });
    await resetHub();
    link = await openLink();
    const welcome = await link.hello(10);
    expect(welcome.tracking?.key).toBe(base64url(key));
    expect(JSON.stringify(welcome)).not.toContain(env.TRACKING_SECRET);
    await sendOne(
      t.liveKey,
      mailBody(t.from, {
        tracking_settings: {
          open_tracking: { enable: false },
          ganalytics: { enable: true, utm_source: "news" },
          subscription_tracking: { enable: true, substitution_tag: "[u]" },
        },
        mail_settings: { footer: { enable: true, text: "-- Acme" } },
      }),
    );
    const [job] = await link.jobs(1, 5000);
    expect(job!.message.tracking).toEqual({
      click: { enableText: true },
      subscription: { substitutionTag: "[u]" },
      ganalytics: { utm_source: "news" },
      footer: { text: "-- Acme" },
    });
  });
});
