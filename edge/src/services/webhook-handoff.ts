/**
 * The hub's durable hand-off of events to the tenants' WebhookQueues (docs/api/webhooks.md#guarantees).
 *
 * An OriginHub stages the events a write made (a catalog flush, an expiry, an inbound report) in its
 * own SQLite table `webhook_handoff`, in the same synchronous block that notes the write as done
 * (one implicit transaction: either D1's write is noted and its events are staged, or neither, and
 * the write is replayed with the same events). A staged row leaves the table only when the tenant's
 * WebhookQueue has taken its events (`handoff`), so every event reaches the queue at least once; the
 * queue de-duplicates by event (services/webhook-events.ts, `dedupeKey`), so a hand-off repeated
 * after a lost answer or a restart queues nothing twice.
 *
 * Draining: right after staging (not awaited by the flush), and from the hub's alarm. A row being
 * handed off is leased (`next_at` moved LEASE_MS ahead) in the same block that reads it, so the
 * alarm does not wake for it meanwhile and a hub stopped mid-call tries it again after the lease. A
 * refused hand-off is tried again after 1 s, 5 s, 30 s, 2 min, then every 10 min; a row still
 * refused HANDOFF_GIVE_UP_MS after it was staged is dropped with an error in the log (the queue
 * remembers event identities 4 days, so a later hand-off could no longer be told from a new one).
 *
 * Tenants without webhooks: a queue that answers that it has no active endpoint makes the hub skip
 * that tenant's events (no row, no call) for NO_WEBHOOKS_TTL_MS; the first events after that window
 * ask again. So an endpoint created or re-enabled receives the events made from at most
 * NO_WEBHOOKS_TTL_MS after the change, while a tenant without webhooks costs one queue call per
 * hub shard per window instead of one per flush.
 */
import type { FlushedEvent } from "./webhook-events.ts";

/** Waits after the 1st, 2nd, … refused hand-off of a row; the last one repeats. */
export const HANDOFF_RETRY_MS = [1_000, 5_000, 30_000, 120_000, 600_000] as const;
/** A row no queue took for this long after it was staged is dropped (and logged). */
export const HANDOFF_GIVE_UP_MS = 24 * 3600_000;
/** How long a queue's "no active endpoint" keeps a tenant's events from being staged. */
export const NO_WEBHOOKS_TTL_MS = 5_000;
/** A row being handed off is not due again before this (a hub stopped mid-call retries then). */
export const LEASE_MS = 60_000;
/** Events per staged row, and per queue call (rows of one tenant are merged up to this). */
const EVENTS_PER_CALL = 1_000;
/** Rows read per drain round. */
const ROWS_PER_ROUND = 100;

/** What the drain needs of a tenant's WebhookQueue (its RPC stub). */
export interface HandoffTarget {
  handoff(tenantId: string, events: FlushedEvent[]): Promise<{ queued: number; endpoints: number }>;
}

export const HANDOFF_SQL = {
  /** Due rows, oldest first (webhook_handoff_due). */
  due: "SELECT seq, tenant_id, events, attempts, staged_at FROM webhook_handoff WHERE next_at <= ? ORDER BY next_at LIMIT ?",
  /** When the next row falls due (webhook_handoff_due); part of the hub's alarm (OUTBOX_SQL.nextWake). */
  next: "SELECT min(next_at) AS t FROM webhook_handoff",
} as const;

export function ensureHandoffTable(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS webhook_handoff (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    events TEXT NOT NULL,
    staged_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL
  )`);
  sql.exec("CREATE INDEX IF NOT EXISTS webhook_handoff_due ON webhook_handoff(next_at)");
}

interface StagedRow extends Record<string, SqlStorageValue> {
  seq: number;
  tenant_id: string;
  events: string;
  attempts: number;
  staged_at: number;
}

export class WebhookHandoff {
  /** Tenant → until when its queue is taken to have no active endpoint. */
  private readonly noWebhooks = new Map<string, number>();
  private draining: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly sql: SqlStorage,
    private readonly queueOf: (tenantId: string) => HandoffTarget,
    private readonly clock: () => number = () => Date.now(),
  ) {}

  /**
   * Stages `events` (synchronous: call it in the block that notes their write as done). Returns the
   * number of rows written; a tenant known to have no webhooks gets none.
   */
  stage(events: FlushedEvent[]): number {
    const now = this.clock();
    const byTenant = new Map<string, FlushedEvent[]>();
    for (const e of events) {
      const until = this.noWebhooks.get(e.tenantId);
      if (until !== undefined) {
        if (until > now) continue;
        this.noWebhooks.delete(e.tenantId);
      }
      const list = byTenant.get(e.tenantId);
      if (list) list.push(e);
      else byTenant.set(e.tenantId, [e]);
    }
    let rows = 0;
    for (const [tenantId, list] of byTenant) {
      for (let i = 0; i < list.length; i += EVENTS_PER_CALL) {
        this.sql.exec(
          "INSERT INTO webhook_handoff (tenant_id, events, staged_at, attempts, next_at) VALUES (?, ?, ?, 0, ?)",
          tenantId,
          JSON.stringify(list.slice(i, i + EVENTS_PER_CALL)),
          now,
          now,
        );
        rows++;
      }
    }
    return rows;
  }

  /** Rows waiting (tests and stats). */
  waiting(): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM webhook_handoff").one().n;
  }

  /** Hands every due row to its queue; one drain at a time (a call during one makes it run again). */
  drain(): Promise<void> {
    if (this.draining) {
      this.again = true;
      return this.draining;
    }
    this.draining = (async () => {
      try {
        do {
          this.again = false;
          while (await this.round()) {
            // a full round: more rows may be due
          }
        } while (this.again);
      } finally {
        this.draining = null;
      }
    })();
    return this.draining;
  }

  /** One round: reads and leases due rows (one synchronous block), hands them off per tenant. True when the round was full. */
  private async round(): Promise<boolean> {
    const now = this.clock();
    const rows = this.sql.exec<StagedRow>(HANDOFF_SQL.due, now, ROWS_PER_ROUND).toArray();
    if (rows.length === 0) return false;
    this.sql.exec(
      "UPDATE webhook_handoff SET next_at = ? WHERE seq IN (SELECT value FROM json_each(?))",
      now + LEASE_MS,
      JSON.stringify(rows.map((r) => r.seq)),
    );
    // Rows of one tenant go in as few calls as EVENTS_PER_CALL allows.
    const calls: { tenantId: string; rows: StagedRow[]; events: FlushedEvent[] }[] = [];
    for (const r of rows) {
      const events = JSON.parse(r.events) as FlushedEvent[];
      const call = calls.find(
        (c) => c.tenantId === r.tenant_id && c.events.length + events.length <= EVENTS_PER_CALL,
      );
      if (call) {
        call.rows.push(r);
        call.events.push(...events);
      } else calls.push({ tenantId: r.tenant_id, rows: [r], events });
    }
    await Promise.all(calls.map((c) => this.handOff(c.tenantId, c.rows, c.events)));
    return rows.length === ROWS_PER_ROUND;
  }

  private async handOff(tenantId: string, rows: StagedRow[], events: FlushedEvent[]): Promise<void> {
    const seqs = JSON.stringify(rows.map((r) => r.seq));
    try {
      const answer = await this.queueOf(tenantId).handoff(tenantId, events);
      this.sql.exec("DELETE FROM webhook_handoff WHERE seq IN (SELECT value FROM json_each(?))", seqs);
      if (answer.endpoints === 0) this.noWebhooks.set(tenantId, this.clock() + NO_WEBHOOKS_TTL_MS);
      else this.noWebhooks.delete(tenantId);
    } catch (err) {
      const now = this.clock();
      for (const r of rows) {
        if (now - r.staged_at >= HANDOFF_GIVE_UP_MS) {
          this.sql.exec("DELETE FROM webhook_handoff WHERE seq = ?", r.seq);
          console.error(
            JSON.stringify({
              level: "error",
              msg: "webhook events dropped: no queue took them within a day",
              tenantId,
              events: (JSON.parse(r.events) as unknown[]).length,
              error: errorText(err),
            }),
          );
          continue;
        }
        const wait = HANDOFF_RETRY_MS[Math.min(r.attempts, HANDOFF_RETRY_MS.length - 1)]!;
        this.sql.exec(
          "UPDATE webhook_handoff SET attempts = attempts + 1, next_at = ? WHERE seq = ?",
          now + wait,
          r.seq,
        );
      }
      console.warn(
        JSON.stringify({
          level: "warn",
          msg: "webhook hand-off refused; staged for a retry",
          tenantId,
          events: events.length,
          error: errorText(err),
        }),
      );
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
