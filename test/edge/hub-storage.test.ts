/**
 * The OriginHub's storage layout (edge/src/objects/origin-hub.ts, "Storage"): an object written by the
 * previous layout (the job payload in the outbox row, a `catalogued` flag, six indexes) is migrated in
 * place when it starts and keeps every message moving; `results` frames are applied result by result
 * and acknowledged in one resultAck; and every outbox query the hub runs on a large outbox searches an
 * index (EXPLAIN QUERY PLAN), never scans the table.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OUTBOX_SQL, type OriginHub } from "../../edge/src/objects/origin-hub.ts";
import type { LinkResult } from "../../shared/link/protocol.ts";
import {
  breakD1,
  getMessage,
  linkSettled,
  mailBody,
  openLink,
  resetHub,
  restoreD1,
  sendOne,
  setupTenant,
  type LinkClient,
  type TenantFixture,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

/** The outbox as the previous version created it (its DDL and indexes, verbatim). */
const OLD_OUTBOX = `CREATE TABLE outbox (
  message_id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  entry TEXT NOT NULL,
  recipients TEXT NOT NULL,
  dispatches INTEGER NOT NULL DEFAULT 0,
  deferrals INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  due_at INTEGER NOT NULL,
  lease_link TEXT,
  lease_node TEXT,
  lease_boot TEXT,
  lease_until INTEGER,
  enqueued_at INTEGER NOT NULL,
  delivered INTEGER NOT NULL DEFAULT 0,
  bounced INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  acked INTEGER NOT NULL DEFAULT 0,
  catalogued INTEGER NOT NULL DEFAULT 1
)`;
const OLD_INDEXES = [
  "CREATE INDEX outbox_catalogued ON outbox(catalogued, enqueued_at)",
  "CREATE INDEX outbox_ready ON outbox(state, due_at)",
  "CREATE INDEX outbox_lease ON outbox(lease_link)",
  "CREATE INDEX outbox_node ON outbox(lease_node, lease_boot)",
  "CREATE INDEX outbox_lease_until ON outbox(state, lease_until)",
  "CREATE INDEX outbox_age ON outbox(state, enqueued_at)",
];

const opened: LinkClient[] = [];
let t: TenantFixture;
beforeEach(async () => {
  t = await setupTenant();
  await resetHub();
});
afterEach(async () => {
  await restoreD1();
  for (const l of opened.splice(0)) l.close();
});

async function catalogFlushed(): Promise<void> {
  for (let i = 0; i < 50; i++) if ((await hub().flush()).uncatalogued === 0) return;
  throw new Error("the hub never finished its catalog flush");
}

const delivered = (id: string, attempt: number): LinkResult => ({
  jobId: `${id}.${attempt}`,
  messageId: id,
  attempt,
  recipients: [{ recipient: "rcpt@example.net", status: "delivered", smtpCode: 250, response: "250 OK" }],
});

function rowsOf(ids: string[]): Promise<Record<string, { state: string; entry: number; catalog: number }>> {
  return runInDurableObject(hub(), (_instance, state) => {
    const out: Record<string, { state: string; entry: number; catalog: number }> = {};
    for (const id of ids) {
      const sql = state.storage.sql;
      const row = sql
        .exec<{ state: string }>("SELECT state FROM outbox WHERE message_id = ?", id)
        .toArray()[0];
      if (!row) continue;
      out[id] = {
        state: row.state,
        entry: sql.exec("SELECT 1 FROM outbox_entry WHERE message_id = ?", id).toArray().length,
        catalog: sql.exec("SELECT 1 FROM catalog WHERE message_id = ?", id).toArray().length,
      };
    }
    return out;
  });
}

describe("an outbox of the previous layout", () => {
  it("is migrated in place when the object starts, and its messages keep moving", async () => {
    const body = (subject: string) => mailBody(t.from, { subject });
    // b and c: catalogued, and (below) leased to a process that keeps running across the upgrade.
    const [a, b, c] = [
      await sendOne(t.liveKey, body("ready one")),
      await sendOne(t.liveKey, body("leased one")),
      await sendOne(t.liveKey, body("recording one")),
    ];
    // d: below, its catalog rows wait in the hub again (catalogued = 0 in the old layout), as if the
    // object had stopped before its flush; replaying them into D1 is idempotent.
    await breakD1();
    const d = await sendOne(t.liveKey, body("uncatalogued one"));
    const dRows = await runInDurableObject(
      hub(),
      (_instance, state) =>
        state.storage.sql.exec<{ rows: string }>("SELECT rows FROM catalog WHERE message_id = ?", d).one()
          .rows,
    );
    await restoreD1();
    await catalogFlushed();
    const leaseUntil = Date.now() + 300_000;

    // Rewrite the storage into the previous layout, as an object written by the previous version holds it.
    const before = await runInDurableObject(hub(), async (_instance: OriginHub, state) => {
      // Nothing of this instance may run on the rewritten tables before it stops.
      await state.storage.deleteAlarm();
      const sql = state.storage.sql;
      sql.exec(OLD_OUTBOX.replace("CREATE TABLE outbox", "CREATE TABLE outbox_old"));
      sql.exec(
        `INSERT INTO outbox_old (message_id, tenant_id, entry, recipients, dispatches, deferrals, state, due_at,
           lease_link, lease_node, lease_boot, lease_until, enqueued_at, delivered, bounced, failed, acked, catalogued)
         SELECT o.message_id, o.tenant_id, e.entry, o.recipients, o.dispatches, o.deferrals, o.state, o.due_at,
           o.lease_link, o.lease_node, o.lease_boot, o.lease_until, o.enqueued_at, o.delivered, o.bounced,
           o.failed, o.acked, CASE WHEN c.message_id IS NULL THEN 1 ELSE 0 END
         FROM outbox o JOIN outbox_entry e ON e.message_id = o.message_id
         LEFT JOIN catalog c ON c.message_id = o.message_id`,
      );
      for (const [id, s] of [
        [b, "leased"],
        // Its result was being written when the object stopped: back to its lease at start.
        [c, "recording"],
      ] as const) {
        sql.exec(
          `UPDATE outbox_old SET state = ?, dispatches = 1, lease_link = 'gone', lease_node = 'node-up',
             lease_boot = 'boot-up', lease_until = ?, acked = 1 WHERE message_id = ?`,
          s,
          leaseUntil,
          id,
        );
      }
      sql.exec("DROP TABLE outbox");
      sql.exec("DROP TABLE outbox_entry");
      sql.exec("ALTER TABLE outbox_old RENAME TO outbox");
      for (const ddl of OLD_INDEXES) sql.exec(ddl);
      sql.exec("UPDATE outbox SET catalogued = 0 WHERE message_id = ?", d);
      sql.exec("INSERT INTO catalog (message_id, rows) VALUES (?, ?)", d, dRows);
      return sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('outbox')")
        .toArray()
        .map((r) => r.name);
    });
    expect(before).toContain("entry");
    expect(before).toContain("catalogued");
    // D1 fails while the new instance starts, so d's catalog rows are still waiting when we look.
    await breakD1();
    // Start the object again: the constructor of the next instance migrates.
    await expect(
      runInDurableObject(hub(), (_instance: OriginHub, state) => {
        state.abort("test: restart into the new layout");
      }),
    ).rejects.toThrow();

    const layout = await runInDurableObject(hub(), (_instance, state) => ({
      columns: state.storage.sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('outbox')")
        .toArray()
        .map((r) => r.name),
      indexes: state.storage.sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox' AND sql IS NOT NULL ORDER BY name",
        )
        .toArray()
        .map((r) => r.name),
    }));
    expect(layout.columns).not.toContain("entry");
    expect(layout.columns).not.toContain("catalogued");
    expect(layout.columns).toContain("ip_pool");
    expect(layout.indexes).toEqual(["outbox_holder", "outbox_lease_end", "outbox_ready", "outbox_ready_age"]);
    expect(await rowsOf([a, b, c, d])).toEqual({
      [a]: { state: "ready", entry: 1, catalog: 0 },
      [b]: { state: "leased", entry: 1, catalog: 0 },
      [c]: { state: "leased", entry: 1, catalog: 0 },
      [d]: { state: "ready", entry: 1, catalog: 1 },
    });

    // d's catalog rows are written again (changing nothing); the process that held b and c reconnects
    // and gets a and d.
    await restoreD1();
    await catalogFlushed();
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(5, "node-up", "boot-up");
    const jobs = await origin.jobs(2);
    expect(jobs.map((j) => [j.messageId, j.message.subject]).sort()).toEqual(
      [
        [a, "ready one"],
        [d, "uncatalogued one"],
      ].sort(),
    );
    // b and c's results, as one coalesced frame: recorded, acknowledged together, and gone from the hub.
    origin.send({ type: "results", results: [b, c].map((id) => delivered(id, 1)) });
    expect((await origin.next("resultAck")).jobIds.sort()).toEqual([`${b}.1`, `${c}.1`].sort());
    for (const id of [b, c]) expect((await getMessage(t.liveKey, id)).status).toBe("delivered");
    expect(Object.keys(await rowsOf([b, c]))).toEqual([]);
    const left = await runInDurableObject(
      hub(),
      (_instance, state) =>
        state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM outbox_entry").one().n,
    );
    expect(left).toBe(2);
  });
});

describe("an outbox from before the ip_pool column", () => {
  it("gets each row's pool from its payload when the object starts", async () => {
    const [plain, pooled] = [
      await sendOne(t.liveKey, mailBody(t.from)),
      await sendOne(t.liveKey, mailBody(t.from)),
    ];
    await runInDurableObject(hub(), async (_instance: OriginHub, state) => {
      await state.storage.deleteAlarm();
      const sql = state.storage.sql;
      // The pool was only in the payload then.
      const entry = JSON.parse(
        sql.exec<{ entry: string }>("SELECT entry FROM outbox_entry WHERE message_id = ?", pooled).one()
          .entry,
      ) as Record<string, unknown>;
      sql.exec(
        "UPDATE outbox_entry SET entry = ? WHERE message_id = ?",
        JSON.stringify({ ...entry, ipPool: "bulk" }),
        pooled,
      );
      sql.exec("ALTER TABLE outbox DROP COLUMN ip_pool");
    });
    await expect(
      runInDurableObject(hub(), (_instance: OriginHub, state) => {
        state.abort("test: restart into the new layout");
      }),
    ).rejects.toThrow();
    const pools = await runInDurableObject(hub(), (_instance, state) =>
      Object.fromEntries(
        state.storage.sql
          .exec<{ message_id: string; ip_pool: string | null }>(
            "SELECT message_id, ip_pool FROM outbox WHERE message_id IN (?, ?)",
            plain,
            pooled,
          )
          .toArray()
          .map((r) => [r.message_id, r.ip_pool]),
      ),
    );
    expect(pools).toEqual({ [plain]: null, [pooled]: "bulk" });
  });
});

describe("a results frame", () => {
  it("records each result once, acknowledges them in one resultAck, and acknowledges a replay without applying it again", async () => {
    const ids = [
      await sendOne(t.liveKey, mailBody(t.from)),
      await sendOne(t.liveKey, mailBody(t.from)),
      await sendOne(t.liveKey, mailBody(t.from)),
    ];
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(3);
    const jobs = await origin.jobs(3);
    origin.send({ type: "ack", jobIds: jobs.map((j) => j.jobId) });
    await linkSettled(origin);
    const results = jobs.map((j) => delivered(j.messageId, j.attempt));
    // One result twice in the same frame (a re-send coalesced with the first copy), and one for a
    // dispatch that never happened: the copy is acknowledged with the first, the stranger at once.
    const stranger = { ...results[0]!, jobId: `${ids[0]}.7`, attempt: 7 };
    origin.send({ type: "results", results: [...results, results[1]!, stranger] });
    const first = await origin.next("resultAck");
    expect(first.jobIds).toEqual([stranger.jobId]);
    const second = await origin.next("resultAck");
    expect(second.jobIds.sort()).toEqual([...jobs.map((j) => j.jobId), jobs[1]!.jobId].sort());
    for (const id of ids) {
      const m = await getMessage(t.liveKey, id);
      expect(m).toMatchObject({ status: "delivered", dispatches: 1 });
      expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
    }

    // The whole frame again (the origin re-sends what it did not see acknowledged): nothing is applied twice.
    origin.send({ type: "results", results });
    expect((await origin.next("resultAck")).jobIds.sort()).toEqual(jobs.map((j) => j.jobId).sort());
    for (const id of ids) {
      const m = await getMessage(t.liveKey, id);
      expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
    }
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 0 });
  });

  it("is refused as invalid when it is empty or carries more than MAX_RESULTS_PER_FRAME", async () => {
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(1);
    origin.send({ type: "results", results: [] } as never);
    expect(await origin.next("error")).toMatchObject({ code: "invalid_frame" });
    const one = { jobId: "x.1", messageId: "x", attempt: 1, recipients: delivered("x", 1).recipients };
    origin.send({ type: "results", results: Array.from({ length: 501 }, () => one) });
    expect(await origin.next("error")).toMatchObject({ code: "invalid_frame" });
  });
});

describe("outbox query plans", () => {
  it("every outbox query the hub runs on a large outbox searches an index instead of scanning", async () => {
    const plans = await runInDurableObject(hub(), (_instance, state) => {
      const sql = state.storage.sql;
      const plan = (query: string, ...args: (string | number)[]) =>
        sql
          .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...args)
          .toArray()
          .map((r) => r.detail);
      return {
        due: plan(OUTBOX_SQL.due, 0, 10, '["bulk"]'),
        nextWake: plan(OUTBOX_SQL.nextWake, 0, 1, 2),
        expired: plan(OUTBOX_SQL.expired, 0),
        expireLeases: plan(OUTBOX_SQL.expireLeases, 0),
        renew: plan(OUTBOX_SQL.renew, 0, "l", "[]", "n", "b"),
        lease: plan(OUTBOX_SQL.lease, "l", "n", "b", 0, "[]"),
        attempts: plan(OUTBOX_SQL.attempts, "[]"),
        recording: plan(OUTBOX_SQL.recording, "[]"),
        finished: plan(OUTBOX_SQL.finished, "[]"),
      };
    });
    const scansOutbox = (details: string[]) =>
      details.filter((d) => /^SCAN (outbox|o)\b/.test(d) && !/USING (COVERING )?INDEX/.test(d));
    for (const [name, details] of Object.entries(plans)) {
      expect({ name, scans: scansOutbox(details) }).toEqual({ name, scans: [] });
    }
    expect(plans.due.join("\n")).toMatch(/outbox_ready/);
    expect(plans.nextWake.join("\n")).toMatch(/outbox_ready/);
    expect(plans.nextWake.join("\n")).toMatch(/outbox_lease_end/);
    expect(plans.nextWake.join("\n")).toMatch(/outbox_ready_age/);
    expect(plans.expired.join("\n")).toMatch(/outbox_ready_age/);
    expect(plans.expireLeases.join("\n")).toMatch(/outbox_lease_end/);
    // The batched updates find each row of their list by its primary key.
    for (const batched of [plans.renew, plans.lease, plans.attempts, plans.recording, plans.finished]) {
      expect(batched.join("\n")).toMatch(
        /SEARCH outbox USING (COVERING )?INDEX sqlite_autoindex_outbox_1 \(message_id=\?\)/,
      );
    }
  });
});
