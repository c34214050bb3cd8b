/**
 * GET /v3/messages as SendGrid's Email Activity clients read it (docs/api/sendgrid.md#sendgrid-email-activity-fields):
 * the `query` language against real D1 rows, `limit`, the extra fields, and a query that tries to
 * reach another tenant. Messages are sandbox sends (in D1 at the 202); statuses, times and events
 * are then written to D1 so every query has a fixed answer.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { bearer, call, getMessage, mailBody, sendOne, setupTenant, type TenantFixture } from "./helpers.ts";

interface Row {
  id: string;
  msg_id: string;
  to_email: string | null;
  opens_count: number;
  clicks_count: number;
  last_event_time: string;
  [k: string]: unknown;
}
interface ListBody {
  messages: Row[];
  total: number;
  page: number;
  page_size: number;
  total_pages: number;
}

const T1 = Date.parse("2026-01-10T08:00:05Z");
const BOUNCED_AT = Date.parse("2026-01-11T00:00:00Z");

let a: TenantFixture;
let b: TenantFixture;
let m1: string; // delivered to alice, 2 opens + 1 click, last event 2026-01-10T08:02:05Z
let m2: string; // bounced to bob, last event 2026-01-11T00:00:00Z
let m3: string; // sandbox to carol, no events: last_event_time is its acceptance
let other: string; // tenant b, to alice too

async function send(t: TenantFixture, to: string, subject: string, categories: string[], args?: object) {
  return sendOne(
    t.testKey,
    mailBody(t.from, {
      personalizations: [{ to: [{ email: to }], ...(args ? { custom_args: args } : {}) }],
      subject,
      categories,
    }),
  );
}

beforeAll(async () => {
  a = await setupTenant();
  b = await setupTenant();
  m1 = await send(a, "Alice@example.net", "Welcome aboard", ["onboarding"], { plan: "pro" });
  m2 = await send(a, "bob@example.net", 'Your "invoice" #42', ["billing"], { plan: "free" });
  m3 = await send(a, "carol@example.net", "Weekly digest", ["digest"]);
  other = await send(b, "alice@example.net", "Welcome aboard", ["onboarding"], { plan: "pro" });
  const upd = env.DB.prepare("UPDATE messages SET status = ?, created_at = ? WHERE id = ?");
  const ev = env.DB.prepare(
    "INSERT INTO events (id, tenant_id, message_id, event_type, recipient_email, timestamp, attempt, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
  );
  await env.DB.batch([
    upd.bind("delivered", Date.parse("2026-01-10T08:00:00Z"), m1),
    upd.bind("bounced", Date.parse("2026-01-10T23:00:00Z"), m2),
    upd.bind("sandbox", Date.parse("2026-01-12T00:00:00Z"), m3),
    upd.bind("delivered", Date.parse("2026-01-10T08:00:00Z"), other),
    ev.bind(
      "evt_a1",
      a.tenantId,
      m1,
      "delivered",
      "alice@example.net",
      T1,
      1,
      '{"mx_host":"mx.example.net","attempt":1,"smtp_response":"250 OK"}',
    ),
    ev.bind("evt_a2", a.tenantId, m1, "open", "alice@example.net", T1 + 60_000, 0, "{}"),
    ev.bind("evt_a3", a.tenantId, m1, "open", "alice@example.net", T1 + 61_000, 0, "{}"),
    ev.bind(
      "evt_a4",
      a.tenantId,
      m1,
      "click",
      "alice@example.net",
      T1 + 120_000,
      0,
      '{"url":"https://example.net/"}',
    ),
    ev.bind(
      "evt_a5",
      a.tenantId,
      m2,
      "bounce",
      "bob@example.net",
      BOUNCED_AT,
      1,
      '{"reason":"550 5.1.1 no such user","mx_host":"mx.example.net","attempt":1}',
    ),
    // Tenant b's message has opens too: a query of tenant a must never count or see them.
    ev.bind("evt_b1", b.tenantId, other, "open", "alice@example.net", T1 + 60_000, 0, "{}"),
  ]);
});

async function list(key: string, params: Record<string, string>): Promise<ListBody> {
  const res = await call(`/v3/messages?${new URLSearchParams(params)}`, { headers: bearer(key) });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return JSON.parse(text) as ListBody;
}
const q = async (query: string) => (await list(a.testKey, { query })).messages.map((m) => m.id);

describe("GET /v3/messages?query= (SendGrid's Email Activity query language)", () => {
  const cases: [string, () => string, () => string[]][] = [
    ["to_email exact", () => 'to_email="alice@example.net"', () => [m1]],
    ["to_email case-insensitive", () => 'to_email="ALICE@example.net"', () => [m1]],
    ["to_email !=", () => 'to_email!="alice@example.net"', () => [m3, m2]],
    ["to_email IN", () => 'to_email IN ("bob@example.net", "carol@example.net")', () => [m3, m2]],
    ["to_email LIKE", () => 'to_email LIKE "%@example.net"', () => [m3, m2, m1]],
    ["ScaiSend status", () => 'status="delivered"', () => [m1]],
    ["SendGrid's not_delivered", () => 'status="not_delivered"', () => [m2]],
    ["SendGrid's processed (nothing pending here)", () => 'status="processed"', () => []],
    ["OR", () => 'status="sandbox" OR status="bounced"', () => [m3, m2]],
    ["status IN", () => 'status IN ("delivered", "bounced")', () => [m2, m1]],
    ["status NOT IN", () => 'status NOT IN ("delivered", "bounced")', () => [m3]],
    ["subject LIKE", () => 'subject LIKE "%invoice%"', () => [m2]],
    ["subject NOT LIKE", () => 'subject NOT LIKE "W%"', () => [m2]],
    ["escaped quotes in a string", () => 'subject="Your \\"invoice\\" #42"', () => [m2]],
    ["single-quoted string", () => "subject='Weekly digest'", () => [m3]],
    ["an injection attempt is only a value", () => `subject="x' OR '1'='1"`, () => []],
    ["Contains(categories)", () => 'Contains(categories,"billing")', () => [m2]],
    ["NOT Contains", () => 'NOT Contains(categories, "billing")', () => [m3, m1]],
    ["unique_args key", () => "unique_args['plan']=\"pro\"", () => [m1]],
    ["unique_args !=", () => "unique_args['plan']!=\"pro\"", () => [m3, m2]],
    ["unique_args IS NULL", () => "unique_args['plan'] IS NULL", () => [m3]],
    ["unique_args IS NOT NULL", () => "unique_args['plan'] IS NOT NULL", () => [m2, m1]],
    ["opens_count counted from open events", () => "opens_count > 1", () => [m1]],
    ["clicks_count", () => "clicks_count = 1", () => [m1]],
    ["SendGrid's short name opens", () => "opens = 0", () => [m3, m2]],
    [
      "last_event_time BETWEEN, both ends included",
      () => 'last_event_time BETWEEN TIMESTAMP "2026-01-10T00:00:00Z" AND TIMESTAMP "2026-01-11T00:00:00Z"',
      () => [m2, m1],
    ],
    [
      "last_event_time >= (acceptance when no events)",
      () => 'last_event_time >= TIMESTAMP "2026-01-11T12:00:00Z"',
      () => [m3],
    ],
    [
      "last_event_time = to the second",
      () => 'last_event_time = TIMESTAMP "2026-01-10T08:02:05Z"',
      () => [m1],
    ],
    [
      "parentheses",
      () => '(status="delivered" OR status="bounced") AND to_email="bob@example.net"',
      () => [m2],
    ],
    [
      "AND binds tighter than OR",
      () => 'status="delivered" OR status="bounced" AND to_email="bob@example.net"',
      () => [m2, m1],
    ],
    ["NOT over a group", () => 'NOT (status="delivered" OR status="bounced")', () => [m3]],
    [
      "keywords in any case",
      () => 'status="delivered" or status="bounced" and not to_email="x@y"',
      () => [m2, m1],
    ],
    ["msg_id", () => `msg_id="${m1}"`, () => [m1]],
    ["template_id IS NULL", () => "template_id IS NULL", () => [m3, m2, m1]],
    ["from_email, case-insensitive", () => `from_email="${a.from.toUpperCase()}"`, () => [m3, m2, m1]],
    ["api_key_id", () => `api_key_id="${a.testKeyId}"`, () => [m3, m2, m1]],
  ];
  for (const [name, query, expected] of cases) {
    it(name, async () => expect(await q(query())).toEqual(expected()));
  }

  it("ANDs the query with ScaiSend's own filters", async () => {
    const body = await list(a.testKey, { query: 'to_email LIKE "%@example.net"', subject: "digest" });
    expect(body.messages.map((m) => m.id)).toEqual([m3]);
    expect(body.total).toBe(1);
  });

  const bad: [string, RegExp, (query: string) => number][] = [
    ['to_email="x', /^Unterminated string/, (s) => s.indexOf('"') + 1],
    ["to_email = ", /^Expected a quoted string for to_email, found end of query/, (s) => s.length + 1],
    ['foo="x"', /^Unknown field "foo"/, () => 1],
    ['tenant_id="t_other"', /^Unknown field "tenant_id"/, () => 1],
    [
      'status="delivered" AND teammate="x"',
      /^Field "teammate" is not available in ScaiSend yet/,
      (s) => s.indexOf("teammate") + 1,
    ],
    ['status="lost"', /^Unknown status "lost"/, (s) => s.indexOf('"') + 1],
    ['to_email="a" AND', /^Expected a field name, found end of query/, (s) => s.length + 1],
    ['(status="delivered"', /^Expected "\)"/, (s) => s.length + 1],
    [
      'to_email="a" to_email="b"',
      /^Expected AND, OR or the end of the query/,
      (s) => s.lastIndexOf("to_email") + 1,
    ],
    ['last_event_time > "2026-01-01"', /^Expected TIMESTAMP/, (s) => s.indexOf('"') + 1],
    ['last_event_time > TIMESTAMP "yesterday"', /^Not an ISO-8601 time/, (s) => s.indexOf('"') + 1],
    ['opens_count > "a"', /^Expected a whole number/, (s) => s.indexOf('"') + 1],
    ['subject > "a"', /^">" cannot be used with subject/, (s) => s.indexOf(">") + 1],
    ['subject="a\\q"', /^Unknown escape \\q/, (s) => s.indexOf("\\") + 1],
    ['categories="x"', /^Expected "Contains\(categories, …\)"/, () => 1],
    ['status LIKE "d%"', /^LIKE cannot be used with status/, (s) => s.indexOf("LIKE") + 1],
    ['to_email="a" OR 1=1', /^Expected a field name, found number 1/, (s) => s.indexOf("1") + 1],
    ['to_email="a"; DROP TABLE messages', /^Unexpected character ";"/, (s) => s.indexOf(";") + 1],
  ];
  for (const [query, msg, pos] of bad) {
    it(`400 with the position: ${query}`, async () => {
      const res = await call(`/v3/messages?${new URLSearchParams({ query })}`, {
        headers: bearer(a.testKey),
      });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { detail: string };
      const m = /^Invalid query: (.*) at position (\d+)$/.exec(body.detail);
      expect(m, body.detail).not.toBeNull();
      expect(m![1]).toMatch(msg);
      expect(Number(m![2])).toBe(pos(query));
    });
  }

  it("the largest query the parser takes runs on D1 (inside its 100 bound parameters)", async () => {
    const addresses = Array.from({ length: 39 }, (_, i) => `"u${i}@example.net"`);
    expect(await q(`to_email IN (${addresses.join(", ")}, "bob@example.net")`)).toEqual([m2]);
  });

  it("a query whose status words expand past the parameter budget is a 400, not a D1 error", async () => {
    const query = Array.from({ length: 17 }, () => 'status="processed"').join(" OR ");
    const res = await call(`/v3/messages?${new URLSearchParams({ query })}`, { headers: bearer(a.testKey) });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ detail: "Invalid query: Too many values in the query at position 1" });
  });

  it("an empty query is no condition", async () => {
    expect(await q("")).toEqual([m3, m2, m1]);
  });
});

describe("tenant isolation under query", () => {
  it("no query reaches another tenant's messages or counts their events", async () => {
    for (const query of [
      `msg_id="${other}"`,
      `msg_id="${other}" OR msg_id!="${other}"`,
      `NOT msg_id="${m1}" OR msg_id="${other}"`,
      'to_email="alice@example.net" OR NOT to_email="alice@example.net"',
      `api_key_id="${b.testKeyId}"`,
      "opens_count >= 0",
    ]) {
      const ids = await q(query);
      expect(ids, query).not.toContain(other);
      for (const id of ids) expect([m1, m2, m3], query).toContain(id);
    }
    // Tenant b sees its own, with only its own open counted.
    const mine = await list(b.testKey, { query: 'to_email="alice@example.net"' });
    expect(mine.messages.map((m) => [m.id, m.opens_count, m.clicks_count])).toEqual([[other, 1, 0]]);
  });
});

describe("limit", () => {
  it("limit sets the page size (SendGrid's name); page still pages", async () => {
    const first = await list(a.testKey, { limit: "2" });
    expect(first.messages.map((m) => m.id)).toEqual([m3, m2]);
    expect(first).toMatchObject({ total: 3, page: 1, page_size: 2, total_pages: 2 });
    const second = await list(a.testKey, { limit: "2", page: "2" });
    expect(second.messages.map((m) => m.id)).toEqual([m1]);
  });
  it("limit up to 1000 is accepted; ScaiSend's default of 25 holds without limit and page_size", async () => {
    expect((await list(a.testKey, { limit: "1000" })).page_size).toBe(1000);
    expect((await list(a.testKey, {})).page_size).toBe(25);
  });
  for (const [params, msg] of [
    [{ limit: "1001" }, /expected number to be <=1000/],
    [{ limit: "0" }, /expected number to be >=1/],
    [{ limit: "ten" }, /expected number/],
    [{ limit: "10", page_size: "10" }, /^Give page_size or limit, not both$/],
  ] as const) {
    it(`422: ${new URLSearchParams(params)}`, async () => {
      const res = await call(`/v3/messages?${new URLSearchParams(params)}`, { headers: bearer(a.testKey) });
      expect(res.status).toBe(422);
      const body = (await res.json()) as { detail: { loc: string[]; msg: string }[] };
      expect(body.detail[0]!.loc).toEqual(["query", "limit"]);
      expect(body.detail[0]!.msg).toMatch(msg);
    });
  }
});

describe("SendGrid's Email Activity fields", () => {
  it("the list answers msg_id, to_email, opens_count, clicks_count and last_event_time beside ScaiSend's", async () => {
    const body = await list(a.testKey, {});
    const byId = Object.fromEntries(body.messages.map((m) => [m.id, m]));
    expect(byId[m1]).toMatchObject({
      id: m1,
      status: "delivered",
      to_emails: ["Alice@example.net"],
      msg_id: m1,
      to_email: "Alice@example.net",
      opens_count: 2,
      clicks_count: 1,
      last_event_time: "2026-01-10T08:02:05Z",
    });
    expect(byId[m2]).toMatchObject({
      opens_count: 0,
      clicks_count: 0,
      last_event_time: "2026-01-11T00:00:00Z",
    });
    expect(byId[m3]).toMatchObject({
      opens_count: 0,
      clicks_count: 0,
      last_event_time: "2026-01-12T00:00:00Z",
    });
  });

  it("the detail adds api_key_id, unique_args and events with event_name and processed", async () => {
    const d1 = await getMessage(a.testKey, m1);
    expect(d1).toMatchObject({
      msg_id: m1,
      to_email: "Alice@example.net",
      opens_count: 2,
      clicks_count: 1,
      last_event_time: "2026-01-10T08:02:05Z",
      api_key_id: a.testKeyId,
      unique_args: { plan: "pro" },
      custom_args: { plan: "pro" },
    });
    expect(d1.events).toEqual([
      expect.objectContaining({
        event_type: "delivered",
        event_name: "delivered",
        processed: "2026-01-10T08:00:05Z",
        timestamp: Math.floor(T1 / 1000),
        mx_server: "mx.example.net",
        attempt_num: 1,
        reason: "250 OK",
      }),
      expect.objectContaining({
        event_type: "open",
        event_name: "opened",
        processed: "2026-01-10T08:01:05Z",
      }),
      expect.objectContaining({
        event_type: "open",
        event_name: "opened",
        processed: "2026-01-10T08:01:06Z",
      }),
      expect.objectContaining({
        event_type: "click",
        event_name: "clicked",
        processed: "2026-01-10T08:02:05Z",
      }),
    ]);
    const d2 = await getMessage(a.testKey, m2);
    expect(d2.events).toEqual([
      expect.objectContaining({
        event_type: "bounce",
        event_name: "bounced",
        bounce_type: "bounce",
        reason: "550 5.1.1 no such user",
        processed: "2026-01-11T00:00:00Z",
      }),
    ]);
  });
});
