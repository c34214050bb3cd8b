/**
 * The cron sweep of ended dashboard sessions (docs/dashboard.md#sessions) on the real D1: idle and
 * too-old sessions go, live ones stay, in bounded batches (a run stops after its last batch and says
 * more are left), stale sign-in counters go with them, and the Worker's scheduled handler runs it.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import worker from "../../edge/src/index.ts";
import {
  ABSOLUTE_MS,
  FAILURE_WINDOW_MS,
  IDLE_MS,
  sweepEndedSessions,
} from "../../edge/src/services/dashboard-sessions.ts";
import { createTenant } from "./helpers.ts";
import { Browser, createLogin } from "./dashboard.helpers.ts";

const db = createDb(env.DB);

/** `n` session rows of the login, each with these two times (what a sign-in writes, at another time). */
async function sessions(
  login: { id: string; tenantId: string },
  n: number,
  createdAt: number,
  lastSeenAt: number,
): Promise<string[]> {
  const ids = Array.from({ length: n }, () => crypto.randomUUID().replaceAll("-", "").padEnd(64, "0"));
  await env.DB.batch(
    ids.map((id) =>
      env.DB.prepare(
        "INSERT INTO dashboard_sessions (id_hash, tenant_id, login_id, csrf_token, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)",
      ).bind(id, login.tenantId, login.id, "t".repeat(64), createdAt, lastSeenAt),
    ),
  );
  return ids;
}

async function left(loginId: string): Promise<string[]> {
  const r = await env.DB.prepare("SELECT id_hash FROM dashboard_sessions WHERE login_id = ?")
    .bind(loginId)
    .all<{ id_hash: string }>();
  return r.results.map((x) => x.id_hash).sort();
}

describe("the ended-session sweep", () => {
  it("deletes idle and too-old sessions in bounded batches, keeps live ones and their pages working", async () => {
    const tenantId = await createTenant();
    const login = await createLogin(tenantId, ["admin"]);
    const now = Date.now();
    const idle = await sessions(login, 7, now - 60 * 60_000, now - IDLE_MS - 1);
    // Seen a minute ago, but signed in more than 12 hours ago: ended all the same.
    const old = await sessions(login, 3, now - ABSOLUTE_MS - 1, now - 60_000);
    const live = await sessions(login, 2, now - 60 * 60_000, now - 60_000);
    // A real signed-in browser, whose session the sweep must leave alone.
    const browser = await Browser.signIn(login.email);
    const before = await left(login.id);
    expect(before).toHaveLength(13);

    // Batches of 4, at most 2 a run: 8 of the 10 ended go, and the run says more are left.
    const first = await sweepEndedSessions(db, now, 4, 2);
    expect(first).toEqual({ sessions: 8, more: true });
    const afterFirst = await left(login.id);
    expect(afterFirst).toHaveLength(5);
    for (const id of live) expect(afterFirst).toContain(id);

    // Other tenants' ended sessions may be in the table too (other tests): sweep until done.
    let more = true;
    while (more) more = (await sweepEndedSessions(db, now, 4, 2)).more;
    const remaining = await left(login.id);
    for (const id of [...idle, ...old]) expect(remaining).not.toContain(id);
    expect(remaining).toHaveLength(3);
    for (const id of live) expect(remaining).toContain(id);
    expect((await browser.get("/app/messages")).status).toBe(200);
    expect(await sweepEndedSessions(db, now, 4, 2)).toEqual({ sessions: 0, more: false });
  });

  it("drops sign-in failure counters whose window has passed, keeps those still counting", async () => {
    const now = Date.now();
    const stale = `stale-${crypto.randomUUID()}`;
    const counting = `counting-${crypto.randomUUID()}`;
    await env.DB.batch([
      env.DB.prepare(
        "INSERT INTO dashboard_login_failures (key, failures, first_failure_at) VALUES (?, 5, ?)",
      ).bind(stale, now - FAILURE_WINDOW_MS - 1),
      env.DB.prepare(
        "INSERT INTO dashboard_login_failures (key, failures, first_failure_at) VALUES (?, 5, ?)",
      ).bind(counting, now - 60_000),
    ]);
    await sweepEndedSessions(db, now);
    const keys = await env.DB.prepare("SELECT key FROM dashboard_login_failures WHERE key IN (?, ?)")
      .bind(stale, counting)
      .all<{ key: string }>();
    expect(keys.results.map((r) => r.key)).toEqual([counting]);
  });

  it("runs from the Worker's cron", async () => {
    const tenantId = await createTenant();
    const login = await createLogin(tenantId, ["developer"]);
    const now = Date.now();
    const ended = await sessions(login, 2, now - ABSOLUTE_MS - 1, now - IDLE_MS - 1);
    const live = await sessions(login, 1, now - 60_000, now - 60_000);
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "*/5 * * * *", scheduledTime: now }), env, ctx);
    await waitOnExecutionContext(ctx);
    const remaining = await left(login.id);
    for (const id of ended) expect(remaining).not.toContain(id);
    expect(remaining).toEqual(live);
  });
});
