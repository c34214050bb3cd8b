/**
 * Scheduling, batches and cancel (docs/api/sendgrid.md#scheduling-and-batches) through the real
 * Worker, D1 and hub shard (hub-0, HUB_SHARDS = 1): SendGrid's exact bodies and status codes for
 * /v3/mail/batch and /v3/user/scheduled_sends, the scopes, tenant isolation, and what the hub does
 * with send_at, paused and cancelled batches and POST /v3/messages/{id}/cancel, observed over a
 * real /link WebSocket.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Permission } from "../../shared/permissions.ts";
import {
  bearer,
  call,
  createApiKey,
  eventually,
  getMessage,
  linkSettled,
  mailBody,
  openLink,
  resetHub,
  sendMail,
  sendOne,
  setupTenant,
  type LinkClient,
  type TenantFixture,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");
const ALL: Permission[] = ["mail.send", "mail.schedule", "mail.cancel"];

async function keyWith(tenantId: string, scopes: Permission[]): Promise<string> {
  return (await createApiKey(tenantId, { environment: "live", scopes })).key;
}

function req(key: string, method: string, path: string, body?: unknown): Promise<Response> {
  return call(path, {
    method,
    headers: bearer(key),
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
}

async function json(res: Response): Promise<{ status: number; body: unknown }> {
  const text = await res.text();
  return { status: res.status, body: text === "" ? null : JSON.parse(text) };
}

async function newBatch(key: string): Promise<string> {
  const r = await json(await req(key, "POST", "/v3/mail/batch", ""));
  expect(r.status).toBe(201);
  return (r.body as { batch_id: string }).batch_id;
}

function outboxRow(id: string): Promise<{ state: string; due_at: number; enqueued_at: number } | undefined> {
  return runInDurableObject(
    hub(),
    (_i, state) =>
      state.storage.sql
        .exec("SELECT state, due_at, enqueued_at FROM outbox WHERE message_id = ?", id)
        .toArray()[0] as { state: string; due_at: number; enqueued_at: number } | undefined,
  );
}

const sg = (message: string, field: string | null = null) => ({ errors: [{ message, field, help: null }] });
/** /v3/mail/batch and /v3/user/scheduled_sends answer as SendGrid's own service does: no `help`. */
const mako = (message: string, field: string | null = null) => ({ errors: [{ field, message }] });

let t: TenantFixture;
let key: string;
const opened: LinkClient[] = [];

beforeEach(async () => {
  await resetHub();
  t = await setupTenant();
  key = await keyWith(t.tenantId, ALL);
});

afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

async function link(capacity: number): Promise<LinkClient> {
  const l = await openLink();
  opened.push(l);
  await l.hello(capacity);
  return l;
}

describe("POST /v3/mail/batch and GET /v3/mail/batch/{id}", () => {
  it("creates SendGrid-shaped ids from an empty JSON body or {}, and reads them back", async () => {
    const a = await json(await req(key, "POST", "/v3/mail/batch", ""));
    expect(a.status).toBe(201);
    expect(a.body).toEqual({ batch_id: expect.stringMatching(/^[A-Za-z0-9]{32}$/) });
    const b = await json(await req(key, "POST", "/v3/mail/batch", "{}"));
    expect(b.status).toBe(201);
    expect(b.body).not.toEqual(a.body);
    const id = (a.body as { batch_id: string }).batch_id;
    expect(await json(await req(key, "GET", `/v3/mail/batch/${id}`))).toEqual({
      status: 200,
      body: { batch_id: id },
    });
  });

  it.each([
    [
      "a body with fields",
      "POST",
      "/v3/mail/batch",
      { name: "x" },
      400,
      mako("POST /v3/mail/batch takes no request body (send none, or {})."),
    ],
    ["malformed JSON", "POST", "/v3/mail/batch", "{", 400, mako("Bad Request")],
    [
      "a made-up id",
      "GET",
      "/v3/mail/batch/HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi",
      undefined,
      400,
      mako("invalid batch id"),
    ],
    [
      "an id of the wrong shape",
      "GET",
      "/v3/mail/batch/not-a-batch",
      undefined,
      400,
      mako("invalid batch id"),
    ],
  ])("%s (%s %s)", async (_name, method, path, body, status, expected) => {
    expect(await json(await req(key, method, path, body))).toEqual({ status, body: expected });
  });

  it("needs mail.schedule; another tenant's batch is invalid", async () => {
    const plain = await keyWith(t.tenantId, ["mail.send"]);
    expect(await json(await req(plain, "POST", "/v3/mail/batch", ""))).toEqual({
      status: 403,
      body: { detail: "Missing required scope: mail.schedule" },
    });
    const id = await newBatch(key);
    expect((await req(plain, "GET", `/v3/mail/batch/${id}`)).status).toBe(403);
    const other = await setupTenant();
    const otherKey = await keyWith(other.tenantId, ALL);
    expect(await json(await req(otherKey, "GET", `/v3/mail/batch/${id}`))).toEqual({
      status: 400,
      body: mako("invalid batch id"),
    });
  });
});

describe("mail/send with send_at and batch_id", () => {
  it("a future send_at needs mail.schedule (403 without it); a past one sends at once without it", async () => {
    const plain = await keyWith(t.tenantId, ["mail.send"]);
    const at = Math.floor(Date.now() / 1000) + 3600;
    expect(await json(await sendMail(plain, mailBody(t.from, { send_at: at })))).toEqual({
      status: 403,
      body: sg("Missing required scope: mail.schedule", "send_at"),
    });
    const perPersonalization = mailBody(t.from);
    (perPersonalization.personalizations as Record<string, unknown>[])[0]!.send_at = at;
    expect(await json(await sendMail(plain, perPersonalization))).toEqual({
      status: 403,
      body: sg("Missing required scope: mail.schedule", "personalizations.0.send_at"),
    });
    const past = await sendOne(plain, mailBody(t.from, { send_at: Math.floor(Date.now() / 1000) - 60 }));
    const row = await outboxRow(past);
    expect(row?.state).toBe("ready");
    expect(row!.due_at).toBeLessThanOrEqual(Date.now());
  });

  it("the hub holds each personalization until its own send_at (queue age counting from then), status queued", async () => {
    const now = Math.floor(Date.now() / 1000);
    const body = mailBody(t.from, { send_at: now + 3600 });
    body.personalizations = [
      { to: [{ email: "a@example.net" }] },
      { to: [{ email: "b@example.net" }], send_at: now + 7200 },
    ];
    const res = await sendMail(key, body);
    expect(res.status).toBe(202);
    const { message_ids: ids } = (await res.json()) as { message_ids: string[] };
    const [a, b] = [await outboxRow(ids[0]!), await outboxRow(ids[1]!)];
    expect(a).toEqual({ state: "ready", due_at: (now + 3600) * 1000, enqueued_at: (now + 3600) * 1000 });
    expect(b).toEqual({ state: "ready", due_at: (now + 7200) * 1000, enqueued_at: (now + 7200) * 1000 });
    // A link with credit gets nothing: neither is due.
    const l = await link(10);
    await linkSettled(l);
    expect(l.queued("jobs")).toBe(0);
    expect((await getMessage(key, ids[0]!)).status).toBe("queued");
  });

  it("a send_at a second ahead is dispatched once due (the alarm wakes for it)", async () => {
    const l = await link(10);
    const at = Math.floor(Date.now() / 1000) + 2;
    const id = await sendOne(key, mailBody(t.from, { send_at: at }));
    expect(await l.nothing("jobs", 500)).toBe(true);
    const [job] = await l.jobs(1, 5000);
    expect(job!.messageId).toBe(id);
    expect(Date.now()).toBeGreaterThanOrEqual(at * 1000);
  });

  it("batch_id must be a batch of this tenant (SendGrid's 400) and needs mail.schedule", async () => {
    const invalid = {
      errors: [
        {
          message:
            "The batch_id is not valid: it must be an id that POST /v3/mail/batch created for this account.",
          field: "batch_id",
          help: "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send#batch-id",
        },
      ],
    };
    expect(
      await json(await sendMail(key, mailBody(t.from, { batch_id: "HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi" }))),
    ).toEqual({
      status: 400,
      body: invalid,
    });
    const other = await setupTenant();
    const foreign = await newBatch(await keyWith(other.tenantId, ALL));
    expect(await json(await sendMail(key, mailBody(t.from, { batch_id: foreign })))).toEqual({
      status: 400,
      body: invalid,
    });
    const own = await newBatch(key);
    const plain = await keyWith(t.tenantId, ["mail.send"]);
    expect(await json(await sendMail(plain, mailBody(t.from, { batch_id: own })))).toEqual({
      status: 403,
      body: sg("Missing required scope: mail.schedule", "batch_id"),
    });
    const id = await sendOne(key, mailBody(t.from, { batch_id: own }));
    expect((await getMessage(key, id)).batch_id).toBe(own);
  });
});

describe("/v3/user/scheduled_sends", () => {
  it("POST, GET, GET {id}, PATCH, DELETE answer as SendGrid", async () => {
    const id = await newBatch(key);
    const other = await newBatch(key);
    expect(await json(await req(key, "GET", `/v3/user/scheduled_sends/${id}`))).toEqual({
      status: 200,
      body: [],
    });
    expect(
      await json(await req(key, "POST", "/v3/user/scheduled_sends", { batch_id: id, status: "pause" })),
    ).toEqual({
      status: 201,
      body: { batch_id: id, status: "pause" },
    });
    expect(
      await json(await req(key, "POST", "/v3/user/scheduled_sends", { batch_id: id, status: "cancel" })),
    ).toEqual({
      status: 400,
      body: mako(
        `This batch is paused already: change it with PATCH or remove it with DELETE /v3/user/scheduled_sends/${id}.`,
        "batch_id",
      ),
    });
    expect(await json(await req(key, "GET", `/v3/user/scheduled_sends/${id}`))).toEqual({
      status: 200,
      body: [{ batch_id: id, status: "pause" }],
    });
    expect(
      await json(await req(key, "PATCH", `/v3/user/scheduled_sends/${id}`, { status: "cancel" })),
    ).toEqual({
      status: 204,
      body: null,
    });
    expect(await json(await req(key, "GET", "/v3/user/scheduled_sends"))).toEqual({
      status: 200,
      body: [{ batch_id: id, status: "cancel" }],
    });
    expect(
      await json(await req(key, "PATCH", `/v3/user/scheduled_sends/${other}`, { status: "pause" })),
    ).toEqual({
      status: 404,
      body: mako("batch id not found"),
    });
    expect(await json(await req(key, "DELETE", `/v3/user/scheduled_sends/${id}`))).toEqual({
      status: 204,
      body: null,
    });
    expect(await json(await req(key, "DELETE", `/v3/user/scheduled_sends/${id}`))).toEqual({
      status: 404,
      body: mako("batch id not found"),
    });
    expect(await json(await req(key, "GET", "/v3/user/scheduled_sends"))).toEqual({ status: 200, body: [] });
  });

  it.each([
    ["no status", { batch_id: "B" }, mako("status is required.", "status")],
    [
      "a bad status",
      { batch_id: "B", status: "stop" },
      mako("status must be either pause or cancel.", "status"),
    ],
    ["no batch_id", { status: "pause" }, mako("batch_id is required.", "batch_id")],
    ["a number batch_id", { batch_id: 7, status: "pause" }, mako("batch_id must be a string.", "batch_id")],
    ["an unknown field", { batch_id: "B", status: "pause", when: 1 }, mako("Unknown field: when.", "when")],
    [
      "a made-up batch",
      { batch_id: "HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi", status: "pause" },
      mako("invalid batch id"),
    ],
  ])("POST with %s → 400", async (_name, body, expected) => {
    const id = await newBatch(key);
    const withId = JSON.parse(JSON.stringify(body).replace('"B"', JSON.stringify(id)));
    expect(await json(await req(key, "POST", "/v3/user/scheduled_sends", withId))).toEqual({
      status: 400,
      body: expected,
    });
  });

  it("at most 10 batches have a state at once; another tenant neither sees nor changes them", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 11; i++) ids.push(await newBatch(key));
    for (const id of ids.slice(0, 10)) {
      expect(
        (await req(key, "POST", "/v3/user/scheduled_sends", { batch_id: id, status: "pause" })).status,
      ).toBe(201);
    }
    expect(
      await json(await req(key, "POST", "/v3/user/scheduled_sends", { batch_id: ids[10], status: "cancel" })),
    ).toEqual({
      status: 400,
      body: mako(
        "At most 10 batches can be paused or cancelled at once; remove one with DELETE /v3/user/scheduled_sends/{batch_id} first.",
      ),
    });
    const other = await setupTenant();
    const otherKey = await keyWith(other.tenantId, ALL);
    expect(await json(await req(otherKey, "GET", "/v3/user/scheduled_sends"))).toEqual({
      status: 200,
      body: [],
    });
    expect(await json(await req(otherKey, "GET", `/v3/user/scheduled_sends/${ids[0]}`))).toEqual({
      status: 200,
      body: [],
    });
    expect((await req(otherKey, "DELETE", `/v3/user/scheduled_sends/${ids[0]}`)).status).toBe(404);
    expect(
      (await req(otherKey, "POST", "/v3/user/scheduled_sends", { batch_id: ids[10], status: "pause" }))
        .status,
    ).toBe(400);
    expect((await req(key, "GET", "/v3/user/scheduled_sends").then(json)).body).toHaveLength(10);
  });

  it("changes need mail.cancel; reads take mail.schedule too", async () => {
    const id = await newBatch(key);
    const scheduler = await keyWith(t.tenantId, ["mail.send", "mail.schedule"]);
    expect(
      await json(await req(scheduler, "POST", "/v3/user/scheduled_sends", { batch_id: id, status: "pause" })),
    ).toEqual({
      status: 403,
      body: { detail: "Missing required scope: mail.cancel" },
    });
    expect((await req(scheduler, "GET", "/v3/user/scheduled_sends")).status).toBe(200);
    const sender = await keyWith(t.tenantId, ["mail.send"]);
    expect(await json(await req(sender, "GET", "/v3/user/scheduled_sends"))).toEqual({
      status: 403,
      body: { detail: "Missing required scope: mail.cancel" },
    });
    expect((await req(scheduler, "DELETE", `/v3/user/scheduled_sends/${id}`)).status).toBe(403);
  });
});

describe("the hub honours pauses and cancels", () => {
  it("a paused batch is held, also for sends after the pause, and goes out once the pause is removed", async () => {
    const id = await newBatch(key);
    const before = await sendOne(key, mailBody(t.from, { batch_id: id }));
    expect(
      (await req(key, "POST", "/v3/user/scheduled_sends", { batch_id: id, status: "pause" })).status,
    ).toBe(201);
    const after = await sendOne(key, mailBody(t.from, { batch_id: id }));
    const unbatched = await sendOne(key, mailBody(t.from));
    expect((await outboxRow(before))?.state).toBe("held");
    expect((await outboxRow(after))?.state).toBe("held");
    const l = await link(10);
    const [job] = await l.jobs(1);
    expect(job!.messageId).toBe(unbatched);
    expect(await l.nothing("jobs", 300)).toBe(true);
    expect((await getMessage(key, before)).status).toBe("queued");
    expect((await req(key, "DELETE", `/v3/user/scheduled_sends/${id}`)).status).toBe(204);
    const jobs = await l.jobs(2);
    expect(jobs.map((j) => j.messageId).sort()).toEqual([before, after].sort());
  });

  it("a cancelled batch is never sent: held and later messages end cancelled, with a dropped event", async () => {
    const id = await newBatch(key);
    const scheduled = await sendOne(
      key,
      mailBody(t.from, { batch_id: id, send_at: Math.floor(Date.now() / 1000) + 600 }),
    );
    expect(
      (await req(key, "POST", "/v3/user/scheduled_sends", { batch_id: id, status: "cancel" })).status,
    ).toBe(201);
    const later = await sendOne(key, mailBody(t.from, { batch_id: id }));
    const l = await link(10);
    for (const m of [scheduled, later]) {
      const detail = await eventually(
        () => getMessage(key, m),
        (d) => d.status === "cancelled",
        5000,
      );
      expect(detail.status).toBe("cancelled");

      expect(detail.error_message).toBe("Cancelled: its batch was cancelled (/v3/user/scheduled_sends)");
      expect(detail.events.map((e) => e.event_type)).toEqual(["processed", "dropped"]);
      await eventually(
        () => outboxRow(m),
        (r) => r === undefined,
        5000,
      );
      expect(await outboxRow(m)).toBeUndefined();
    }
    await linkSettled(l);
    expect(l.queued("jobs")).toBe(0);
    // Removing the cancel does not bring them back.
    expect((await req(key, "DELETE", `/v3/user/scheduled_sends/${id}`)).status).toBe(204);
    expect((await getMessage(key, later)).status).toBe("cancelled");
  });

  it("a batch paused past the maximum queue age after its send_at expires: failed, never sent", async () => {
    const id = await newBatch(key);
    const m = await sendOne(key, mailBody(t.from, { batch_id: id }));
    const fresh = await sendOne(key, mailBody(t.from, { batch_id: id }));
    expect(
      (await req(key, "POST", "/v3/user/scheduled_sends", { batch_id: id, status: "pause" })).status,
    ).toBe(201);
    await runInDurableObject(hub(), (_i, state) => {
      // Due (and so counting queue age) 72 h and a minute ago.
      state.storage.sql.exec(
        "UPDATE outbox SET enqueued_at = ? WHERE message_id = ?",
        Date.now() - 72 * 3600_000 - 60_000,
        m,
      );
    });
    await hub().flush();
    const d = await eventually(
      () => getMessage(key, m),
      (x) => x.status === "failed" && x.events.length === 2,
      5000,
    );
    expect(d.status).toBe("failed");
    expect(d.error_message).toBe(
      "Expired while its batch was paused: not resumed within the maximum queue age after its send_at",
    );
    expect((await outboxRow(fresh))?.state).toBe("held");
  });

  it("a row returned to ready after the pause is still held at dispatch", async () => {
    const id = await newBatch(key);
    const m = await sendOne(key, mailBody(t.from, { batch_id: id }));
    expect(
      (await req(key, "POST", "/v3/user/scheduled_sends", { batch_id: id, status: "pause" })).status,
    ).toBe(201);
    // Whatever put it back (a link drop, a release), dispatch checks the batch again.
    await runInDurableObject(hub(), (_i, state) => {
      state.storage.sql.exec("UPDATE outbox SET state = 'ready' WHERE message_id = ?", m);
    });
    const l = await link(10);
    await linkSettled(l);
    expect(l.queued("jobs")).toBe(0);
    expect((await outboxRow(m))?.state).toBe("held");
  });
});

describe("POST /v3/messages/{id}/cancel", () => {
  it("cancels a queued message (200), which is never dispatched; repeating answers 200 again", async () => {
    const m = await sendOne(key, mailBody(t.from, { send_at: Math.floor(Date.now() / 1000) + 600 }));
    expect(await json(await req(key, "POST", `/v3/messages/${m}/cancel`))).toEqual({
      status: 200,
      body: { message_id: m, status: "cancelled" },
    });
    // Read-your-writes: cancelled at once, whether the shard or D1 answers.
    expect((await getMessage(key, m)).status).toBe("cancelled");
    const l = await link(10);
    const detail = await eventually(
      () => getMessage(key, m),
      (d) => d.status === "cancelled" && d.events.length === 2,
      5000,
    );
    expect(detail.status).toBe("cancelled");
    expect(detail.events[1]!.metadata).toEqual({
      reason: "Cancelled before it was sent (POST /v3/messages/{id}/cancel)",
    });
    await eventually(
      () => outboxRow(m),
      (r) => r === undefined,
      5000,
    );
    expect(await json(await req(key, "POST", `/v3/messages/${m}/cancel`))).toEqual({
      status: 200,
      body: { message_id: m, status: "cancelled" },
    });
    await linkSettled(l);
    expect(l.queued("jobs")).toBe(0);
  });

  it("refuses a message an origin holds with 409; 404 for another tenant's id; needs mail.cancel", async () => {
    const l = await link(10);
    const m = await sendOne(key, mailBody(t.from));
    await l.jobs(1);
    expect(await json(await req(key, "POST", `/v3/messages/${m}/cancel`))).toEqual({
      status: 409,
      body: {
        detail: `Message ${m} cannot be cancelled: its status is processing. Only a message still queued (not yet handed to a delivery node) can be cancelled.`,
      },
    });
    const other = await setupTenant();
    const otherKey = await keyWith(other.tenantId, ALL);
    expect(await json(await req(otherKey, "POST", `/v3/messages/${m}/cancel`))).toEqual({
      status: 404,
      body: { detail: `Message not found: ${m}` },
    });
    const plain = await keyWith(t.tenantId, ["mail.send"]);
    expect(await json(await req(plain, "POST", `/v3/messages/${m}/cancel`))).toEqual({
      status: 403,
      body: { detail: "Missing required scope: mail.cancel" },
    });
  });

  it(
    "cancel racing dispatch has exactly one winner, and the status says which",
    { timeout: 30_000 },
    async () => {
      // The credit frame that wakes dispatch goes out 0 ms to 256 ms after the cancel request, so
      // either may reach the hub first; whichever does, the other must lose.
      const seen = new Set<number>();
      for (const delayMs of [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]) {
        await resetHub();
        const m = await sendOne(key, mailBody(t.from, { send_at: Math.floor(Date.now() / 1000) + 600 }));
        const l = await link(10);
        await runInDurableObject(hub(), (_i, state) => {
          // Due now, but nothing wakes dispatch until the credit frame.
          state.storage.sql.exec("UPDATE outbox SET due_at = 0 WHERE message_id = ?", m);
        });
        const cancel = req(key, "POST", `/v3/messages/${m}/cancel`);
        await new Promise((r) => setTimeout(r, delayMs));
        l.send({ type: "credit", credits: 1 });
        const res = await cancel;
        await linkSettled(l);
        seen.add(res.status);
        if (res.status === 200) {
          expect(l.queued("jobs")).toBe(0);
          const d = await eventually(
            () => getMessage(key, m),
            (x) => x.status === "cancelled" && x.events.length === 2,
            5000,
          );
          expect(d.status).toBe("cancelled");
          expect(await l.nothing("jobs", 50)).toBe(true);
        } else {
          expect(res.status).toBe(409);
          expect((await l.jobs(1))[0]!.messageId).toBe(m);
          expect((await outboxRow(m))?.state).toBe("leased");
        }
        l.close();
      }
      // Both orders happened, so both branches above were checked.
      expect([...seen].sort()).toEqual([200, 409]);
    },
  );
});

describe("POST /v3/messages/{id}/fail", () => {
  it("ends a message waiting in the outbox failed (200), never dispatched; 409 for one ended otherwise", async () => {
    const m = await sendOne(key, mailBody(t.from, { send_at: Math.floor(Date.now() / 1000) + 600 }));
    expect(await json(await req(key, "POST", `/v3/messages/${m}/fail`))).toEqual({
      status: 200,
      body: { message_id: m, status: "failed" },
    });
    const l = await link(10);
    const d = await eventually(
      () => getMessage(key, m),
      (x) => x.status === "failed" && x.events.length === 2,
      5000,
    );
    expect(d.status).toBe("failed");
    expect(d.error_message).toBe("Marked failed before it was sent (POST /v3/messages/{id}/fail)");
    expect(d.events.map((e) => e.event_type)).toEqual(["processed", "dropped"]);
    await eventually(
      () => outboxRow(m),
      (r) => r === undefined,
      5000,
    );
    // Repeated once it is finished: the same answer.
    expect(await json(await req(key, "POST", `/v3/messages/${m}/fail`))).toEqual({
      status: 200,
      body: { message_id: m, status: "failed" },
    });
    // A message that ended otherwise (cancelled here) cannot be marked failed.
    const c = await sendOne(key, mailBody(t.from, { send_at: Math.floor(Date.now() / 1000) + 600 }));
    expect((await req(key, "POST", `/v3/messages/${c}/cancel`)).status).toBe(200);
    expect(await json(await req(key, "POST", `/v3/messages/${c}/fail`))).toEqual({
      status: 409,
      body: {
        detail: `Message ${c} cannot be marked failed: its status is cancelled. Only a message waiting in the queue (queued, scheduled, paused, or waiting for a retry) can be; one a delivery node holds gets its outcome from that node, or returns to the queue when its lease ends.`,
      },
    });
    await linkSettled(l);
    expect(l.queued("jobs")).toBe(0);
  });

  it("refuses one an origin holds (409, status processing); 404 for another tenant; needs mail.send", async () => {
    const l = await link(10);
    const m = await sendOne(key, mailBody(t.from));
    await l.jobs(1);
    const held = await json(await req(key, "POST", `/v3/messages/${m}/fail`));
    expect(held.status).toBe(409);
    expect((held.body as { detail: string }).detail).toMatch(/its status is processing\./);
    expect((await outboxRow(m))?.state).toBe("leased");
    const other = await setupTenant();
    expect((await req(await keyWith(other.tenantId, ALL), "POST", `/v3/messages/${m}/fail`)).status).toBe(
      404,
    );
    const canceller = await keyWith(t.tenantId, ["mail.cancel"]);
    expect(await json(await req(canceller, "POST", `/v3/messages/${m}/fail`))).toEqual({
      status: 403,
      body: { detail: "Missing required scope: mail.send" },
    });
  });
});
