/**
 * GET /v3/messages (filters, paging, query validation) and GET /v3/messages/{id} (fields, event
 * timeline), docs/api/sendgrid.md#get-v3messages. Dates are pinned by writing created_at in D1, so date filters have
 * fixed answers; everything else is created through the real send route.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { bearer, call, getMessage, mailBody, sendOne, setupTenant, type TenantFixture } from "./helpers.ts";

interface ListBody {
  messages: {
    id: string;
    status: string;
    from_email: string;
    from_name: string | null;
    subject: string;
    to_emails: string[];
    template_id: string | null;
    batch_id: string | null;
    categories: string[];
    created_at: string;
    delivered_at: string | null;
  }[];
  total: number;
  page: number;
  page_size: number;
  total_pages: number;
}

/**
 * Live messages reach the D1 catalog in the hub shard's batched flush (docs/architecture.md, "The
 * accept path"); tests that edit their D1 rows wait for it. flush() answers once nothing waits.
 */
async function catalogued(): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if ((await env.ORIGIN_HUB.getByName("hub-0").flush()).uncatalogued === 0) return;
  }
  throw new Error("hub-0 never finished its catalog flush");
}

async function setCreatedAt(id: string, iso: string): Promise<void> {
  await env.DB.prepare("UPDATE messages SET created_at = ? WHERE id = ?").bind(Date.parse(iso), id).run();
}

interface Seeded {
  t: TenantFixture;
  welcome: string;
  invoice: string;
  digest: string;
}

/**
 * Three messages of a fresh tenant:
 *   welcome  live (queued)  to Alice@Example.net            "Welcome aboard"   [onboarding]  2026-01-10T08:00:00Z
 *   invoice  sandbox        to bob@example.net              "Your invoice #42" [billing, invoices] 2026-01-11T23:59:59Z
 *   digest   sandbox        to alice@example.net, cc carol  "Weekly digest"    [digest]      2026-01-12T00:00:00Z, from news@
 */
async function seed(): Promise<Seeded> {
  const t = await setupTenant();
  const welcome = await sendOne(
    t.liveKey,
    mailBody(t.from, {
      personalizations: [{ to: [{ email: "Alice@Example.net" }] }],
      subject: "Welcome aboard",
      categories: ["onboarding"],
    }),
  );
  const invoice = await sendOne(
    t.testKey,
    mailBody(t.from, {
      personalizations: [{ to: [{ email: "bob@example.net" }] }],
      subject: "Your invoice #42",
      categories: ["billing", "invoices"],
    }),
  );
  const digest = await sendOne(
    t.testKey,
    mailBody(`news@${t.domain}`, {
      personalizations: [{ to: [{ email: "alice@example.net" }], cc: [{ email: "carol@example.net" }] }],
      subject: "Weekly digest",
      categories: ["digest"],
    }),
  );
  await catalogued();
  await setCreatedAt(welcome, "2026-01-10T08:00:00Z");
  await setCreatedAt(invoice, "2026-01-11T23:59:59Z");
  await setCreatedAt(digest, "2026-01-12T00:00:00Z");
  return { t, welcome, invoice, digest };
}

async function list(key: string, query: string): Promise<ListBody> {
  const res = await call(`/v3/messages${query}`, { headers: bearer(key) });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return JSON.parse(text) as ListBody;
}

const ids = (body: ListBody) => body.messages.map((m) => m.id);

describe("get /v3/messages filters", () => {
  it("lists the tenant's messages newest first with summary fields", async () => {
    const s = await seed();
    const body = await list(s.t.liveKey, "");
    expect(ids(body)).toEqual([s.digest, s.invoice, s.welcome]);
    expect(body).toMatchObject({ total: 3, page: 1, page_size: 25, total_pages: 1 });
    expect(body.messages[2]).toEqual({
      id: s.welcome,
      status: "queued",
      from_email: s.t.from,
      from_name: null,
      subject: "Welcome aboard",
      to_emails: ["Alice@Example.net"],
      template_id: null,
      batch_id: null,
      categories: ["onboarding"],
      created_at: "2026-01-10T08:00:00Z",
      delivered_at: null,
      msg_id: s.welcome,
      to_email: "Alice@Example.net",
      opens_count: 0,
      clicks_count: 0,
      // Its processed events, recorded at the real accept time (created_at was moved back above).
      last_event_time: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/),
    });
  });

  it("filters by status", async () => {
    const s = await seed();
    expect(ids(await list(s.t.liveKey, "?status=queued"))).toEqual([s.welcome]);
    expect(ids(await list(s.t.liveKey, "?status=sandbox"))).toEqual([s.digest, s.invoice]);
    expect(await list(s.t.liveKey, "?status=delivered")).toMatchObject({
      messages: [],
      total: 0,
      total_pages: 0,
    });
  });

  it("filters by to_email: exact, case-insensitive, to recipients only", async () => {
    const s = await seed();
    expect(ids(await list(s.t.liveKey, "?to_email=alice@example.net"))).toEqual([s.digest, s.welcome]);
    expect(ids(await list(s.t.liveKey, "?to_email=ALICE%40EXAMPLE.NET"))).toEqual([s.digest, s.welcome]);
    expect(ids(await list(s.t.liveKey, "?to_email=alice@example"))).toEqual([]);
    expect(ids(await list(s.t.liveKey, "?to_email=carol@example.net"))).toEqual([]);
  });

  it("filters by from_email, exact and case-insensitive", async () => {
    const s = await seed();
    expect(ids(await list(s.t.liveKey, `?from_email=news@${s.t.domain}`))).toEqual([s.digest]);
    expect(ids(await list(s.t.liveKey, `?from_email=NEWS@${s.t.domain.toUpperCase()}`))).toEqual([s.digest]);
    expect(ids(await list(s.t.liveKey, `?from_email=${s.t.from}`))).toEqual([s.invoice, s.welcome]);
    expect(ids(await list(s.t.liveKey, `?from_email=news`))).toEqual([]);
  });

  it("filters by subject substring", async () => {
    const s = await seed();
    expect(ids(await list(s.t.liveKey, "?subject=invoice"))).toEqual([s.invoice]);
    expect(ids(await list(s.t.liveKey, "?subject=%2342"))).toEqual([s.invoice]);
    expect(ids(await list(s.t.liveKey, "?subject=e"))).toEqual([s.digest, s.invoice, s.welcome]);
    expect(ids(await list(s.t.liveKey, "?subject=refund"))).toEqual([]);
  });

  it("treats %, _ and \\ in the subject filter as literal characters", async () => {
    const s = await seed();
    const sale = await sendOne(s.t.testKey, mailBody(s.t.from, { subject: "50% off_today" }));
    expect(ids(await list(s.t.liveKey, "?subject=50%25"))).toEqual([sale]);
    expect(ids(await list(s.t.liveKey, "?subject=off_today"))).toEqual([sale]);
    // Not wildcards: "%" alone and "_" alone match only subjects containing them.
    expect(ids(await list(s.t.liveKey, "?subject=%25"))).toEqual([sale]);
    expect(ids(await list(s.t.liveKey, "?subject=Welcome_aboard"))).toEqual([]);
    const path = await sendOne(s.t.testKey, mailBody(s.t.from, { subject: "saved to C:\\temp" }));
    expect(ids(await list(s.t.liveKey, "?subject=C%3A%5Ctemp"))).toEqual([path]);
    expect(ids(await list(s.t.liveKey, "?subject=%5C"))).toEqual([path]);
  });

  it("filters by category", async () => {
    const s = await seed();
    expect(ids(await list(s.t.liveKey, "?category=billing"))).toEqual([s.invoice]);
    expect(ids(await list(s.t.liveKey, "?category=invoices"))).toEqual([s.invoice]);
    expect(ids(await list(s.t.liveKey, "?category=onboarding"))).toEqual([s.welcome]);
    expect(ids(await list(s.t.liveKey, "?category=bill"))).toEqual([]);
  });

  it("filters by start_date and end_date; a bare end date includes that whole day", async () => {
    const s = await seed();
    const k = s.t.liveKey;
    expect(ids(await list(k, "?start_date=2026-01-11"))).toEqual([s.digest, s.invoice]);
    expect(ids(await list(k, "?end_date=2026-01-11"))).toEqual([s.invoice, s.welcome]);
    expect(ids(await list(k, "?start_date=2026-01-11&end_date=2026-01-11"))).toEqual([s.invoice]);
    expect(ids(await list(k, "?start_date=2026-01-12T00:00:00Z"))).toEqual([s.digest]);
    // An ISO end is inclusive of that instant.
    expect(ids(await list(k, "?end_date=2026-01-11T23:59:59Z"))).toEqual([s.invoice, s.welcome]);
    expect(ids(await list(k, "?end_date=2026-01-11T23:59:58Z"))).toEqual([s.welcome]);
    expect(ids(await list(k, "?start_date=2026-02-01"))).toEqual([]);
  });

  it("combines filters with AND", async () => {
    const s = await seed();
    expect(ids(await list(s.t.liveKey, "?to_email=alice@example.net&status=sandbox"))).toEqual([s.digest]);
    expect(ids(await list(s.t.liveKey, "?category=digest&subject=invoice"))).toEqual([]);
  });
});

describe("get /v3/messages paging", () => {
  it("pages with page and page_size, reporting total and total_pages", async () => {
    const s = await seed();
    const k = s.t.liveKey;
    expect(await list(k, "?page_size=2")).toMatchObject({ total: 3, page: 1, page_size: 2, total_pages: 2 });
    expect(ids(await list(k, "?page_size=2"))).toEqual([s.digest, s.invoice]);
    const second = await list(k, "?page_size=2&page=2");
    expect(ids(second)).toEqual([s.welcome]);
    expect(second).toMatchObject({ total: 3, page: 2, page_size: 2, total_pages: 2 });
    const past = await list(k, "?page_size=2&page=3");
    expect(past).toEqual({ messages: [], total: 3, page: 3, page_size: 2, total_pages: 2 });
    expect(await list(k, "?page_size=1&status=sandbox")).toMatchObject({ total: 2, total_pages: 2 });
    expect(await list(k, "?page_size=100")).toMatchObject({ page_size: 100, total_pages: 1 });
  });
});

describe("get /v3/messages query validation", () => {
  async function expect422(query: string, loc: (string | number)[], msg: string | RegExp): Promise<void> {
    const t = await setupTenant();
    const res = await call(`/v3/messages${query}`, { headers: bearer(t.liveKey) });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { detail: { loc: unknown[]; msg: string; type: string }[] };
    expect(body.detail).toHaveLength(1);
    expect(body.detail[0]!.loc).toEqual(loc);
    expect(body.detail[0]!.type).toBe("value_error");
    if (typeof msg === "string") expect(body.detail[0]!.msg).toBe(msg);
    else expect(body.detail[0]!.msg).toMatch(msg);
  }

  it("page_size above 100 → 422 in FastAPI shape", async () => {
    const t = await setupTenant();
    const res = await call("/v3/messages?page_size=101", { headers: bearer(t.liveKey) });
    expect(res.status).toBe(422);
    expect(await res.json()).toEqual({
      detail: [
        { loc: ["query", "page_size"], msg: "Too big: expected number to be <=100", type: "value_error" },
      ],
    });
  });

  it("page_size 0 → 422", () =>
    expect422("?page_size=0", ["query", "page_size"], /expected number to be >=1/));
  it("page 0 → 422", () => expect422("?page=0", ["query", "page"], /expected number to be >=1/));
  it("page that is not a number → 422", () => expect422("?page=two", ["query", "page"], /expected number/));
  it("unknown status → 422", () => expect422("?status=lost", ["query", "status"], /^Invalid option/));
  it("start_date that is not a date → 422", () =>
    expect422("?start_date=yesterday", ["query", "start_date"], "must be an ISO-8601 date or YYYY-MM-DD"));
});

describe("get /v3/messages/{id}", () => {
  it("returns every field of a live message", async () => {
    const t = await setupTenant();
    const id = await sendOne(
      t.liveKey,
      mailBody(t.from, {
        from: { email: t.from, name: "Acme Mail" },
        reply_to: { email: "support@example.com", name: "Support" },
        personalizations: [
          {
            to: [{ email: "to@example.net", name: "To" }],
            cc: [{ email: "cc@example.net" }],
            bcc: [{ email: "bcc@example.net" }],
            custom_args: { order: "42" },
          },
        ],
        subject: "Order 42",
        content: [
          { type: "text/plain", value: "Your order shipped." },
          { type: "text/html", value: "<p>Your order shipped.</p>" },
        ],
        headers: { "X-Order": "42" },
        categories: ["orders"],
        custom_args: { source: "shop" },
      }),
    );
    const m = await getMessage(t.liveKey, id);
    const created = m.created_at;
    expect(created).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(m).toEqual({
      id,
      status: "queued",
      mode: "live",
      from_email: t.from,
      from_name: "Acme Mail",
      subject: "Order 42",
      to_emails: ["to@example.net"],
      cc_emails: ["cc@example.net"],
      bcc_emails: ["bcc@example.net"],
      reply_to: [{ email: "support@example.com", name: "Support" }],
      headers: { "X-Order": "42" },
      custom_args: { source: "shop", order: "42" },
      template_id: null,
      batch_id: null,
      categories: ["orders"],
      text_content: "Your order shipped.",
      html_content: "<p>Your order shipped.</p>",
      message_id_header: `<${id.slice(4).toLowerCase()}@${t.domain}>`,
      dispatches: 0,
      deferrals: 0,
      error_message: null,
      created_at: created,
      updated_at: created,
      delivered_at: null,
      msg_id: id,
      to_email: "to@example.net",
      opens_count: 0,
      clicks_count: 0,
      last_event_time: created,
      api_key_id: t.liveKeyId,
      unique_args: { source: "shop", order: "42" },
      events: [
        expect.objectContaining({ event_type: "processed", recipient_email: "to@example.net", metadata: {} }),
        expect.objectContaining({ event_type: "processed", recipient_email: "cc@example.net", metadata: {} }),
        expect.objectContaining({
          event_type: "processed",
          recipient_email: "bcc@example.net",
          metadata: {},
        }),
      ],
    });
    for (const e of m.events) {
      expect(e.event_id).toMatch(/^evt_[0-9A-Z]{26}$/);
      expect(e.timestamp).toBe(Math.floor(Date.parse(created) / 1000));
    }
  });

  it("orders the event timeline by time, then by the order events were recorded", async () => {
    const t = await setupTenant();
    const id = await sendOne(t.liveKey, mailBody(t.from));
    await catalogued();
    const base = Date.now() + 10_000;
    const insert = env.DB.prepare(
      "INSERT INTO events (id, tenant_id, message_id, event_type, recipient_email, timestamp, attempt, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, '{}')",
    );
    // Recorded out of time order; the two at base + 5000 share a timestamp.
    await env.DB.batch([
      insert.bind("evt_seed_c", t.tenantId, id, "delivered", "rcpt@example.net", base + 5000, 2),
      insert.bind("evt_seed_z", t.tenantId, id, "open", "rcpt@example.net", base + 5000, 0),
      insert.bind("evt_seed_a", t.tenantId, id, "deferred", "rcpt@example.net", base, 1),
      insert.bind("evt_seed_b", t.tenantId, id, "click", "rcpt@example.net", base + 9000, 0),
    ]);
    const m = await getMessage(t.liveKey, id);
    expect(m.events.map((e) => [e.event_type, e.timestamp])).toEqual([
      ["processed", expect.any(Number)],
      ["deferred", Math.floor(base / 1000)],
      ["delivered", Math.floor((base + 5000) / 1000)],
      ["open", Math.floor((base + 5000) / 1000)],
      ["click", Math.floor((base + 9000) / 1000)],
    ]);
  });

  it("shows a sandbox message with status sandbox and no events", async () => {
    const t = await setupTenant();
    const id = await sendOne(t.testKey, mailBody(t.from));
    const m = await getMessage(t.testKey, id);
    expect(m).toMatchObject({
      id,
      status: "sandbox",
      mode: "sandbox",
      events: [],
      dispatches: 0,
      deferrals: 0,
    });
  });

  it("unknown id → 404 detail", async () => {
    const t = await setupTenant();
    const res = await call("/v3/messages/msg_nope", { headers: bearer(t.liveKey) });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ detail: "Message not found: msg_nope" });
  });
});
