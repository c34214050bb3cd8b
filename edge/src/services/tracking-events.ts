/**
 * The events the public /t/* routes record (docs/api/tracking.md#events): built from the verified
 * token and the request, written to D1's `events` table and handed to the tenant's webhooks. Stats
 * and suppressions follow from the rows (D1 triggers).
 *
 * Durable path (docs/api/webhooks.md#guarantees): before answering, the route hands the hit's event
 * to the hub shard its message id names (`recordTracking`, the shard's `TrackingInbox` below), which
 * keeps it in its own SQLite, writes it to D1 with the other hits of the next TRACKING_FLUSH_MS
 * (one D1 batch for a burst of clicks), and stages it for the webhooks in the same synchronous block
 * that deletes it (services/webhook-handoff.ts: retried until the queue takes it). A hub restarted
 * in between finds the hit still kept and writes it from its alarm.
 *
 * Fallback, when the hub cannot be reached: the isolate collects hits for BATCH_WINDOW_MS
 * (`queueTrackingHits`) and writes them after the answer (`waitUntil`), best effort as before.
 *
 * Ids are stable per hit: `evt_` + 26 base32 characters of SHA-256 over (type, message, recipient,
 * what the hit names: the click's URL, the group) and the minute it came in. A client that fetches the
 * same pixel or link twice within that minute (a retry, a double click, a preview pane and the
 * message view) is recorded once; D1 keeps the first (ON CONFLICT DO NOTHING) and the webhook queue
 * posts an event id once. An open a day later is a new open.
 */
import type { Bindings } from "../env.ts";
import { chunkRows, createDb, type Db } from "../db/client.ts";
import { events } from "../db/schema.ts";
import type { EventType } from "../db/schema.ts";
import { fanOutWebhookEvents } from "./webhook-fanout.ts";
import type { FlushedEvent } from "./webhook-events.ts";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** Hits of one kind on one link within this window are one event. */
export const DEDUPE_WINDOW_MS = 60_000;

export interface TrackingHit {
  type: Extract<EventType, "open" | "click" | "unsubscribe" | "group_unsubscribe" | "group_resubscribe">;
  tenantId: string;
  messageId: string;
  recipient: string;
  /** What distinguishes two hits on the same message (a click's URL, an ASM group id). */
  discriminator?: string;
  metadata: Record<string, unknown>;
  /** Unix ms. */
  at: number;
}

export async function stableEventId(hit: Omit<TrackingHit, "metadata">): Promise<string> {
  const input = [
    hit.type,
    hit.tenantId,
    hit.messageId,
    hit.recipient.toLowerCase(),
    hit.discriminator ?? "",
    String(Math.floor(hit.at / DEDUPE_WINDOW_MS)),
  ].join("\u0000");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(input)));
  // 130 bits in 26 characters: 5 bits per character from the digest's bit stream.
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of digest) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += ALPHABET[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
    if (out.length === 26) break;
  }
  return `evt_${out}`;
}

/**
 * Privacy proxies that fetch every image of a message whatever the recipient does (docs/api/tracking.md#machine-opens):
 *  - Apple Mail Privacy Protection fetches through Apple's proxy with the bare User-Agent
 *    `Mozilla/5.0` (no platform, no engine), from Apple's 17.0.0.0/8 or its relay's addresses;
 *  - Google's image proxy (`GoogleImageProxy` in the User-Agent, via ggpht.com) fetches for Gmail.
 *    It fetches when the message is displayed, but also ahead of that for some accounts: such an
 *    open says "a proxy fetched it", not "a person saw it".
 *  - Yahoo's (`YahooMailProxy`) behaves like Google's.
 * `proxy` names which one matched; the open is still recorded, with `machine_open: true`.
 */
export function machineOpen(userAgent: string, ip: string): { proxy: string } | null {
  const ua = userAgent.trim();
  if (ua === "Mozilla/5.0" || /^17\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(ip)) return { proxy: "apple_mpp" };
  if (/GoogleImageProxy/i.test(ua)) return { proxy: "google_image_proxy" };
  if (/YahooMailProxy/i.test(ua)) return { proxy: "yahoo_mail_proxy" };
  return null;
}

/** The client's address as Cloudflare reports it, and its User-Agent (bounded). */
export function clientOf(req: Request): { userAgent: string; ip: string } {
  return {
    userAgent: (req.headers.get("user-agent") ?? "").slice(0, 512),
    ip: (req.headers.get("cf-connecting-ip") ?? "").slice(0, 64),
  };
}

/** How long hits wait in the isolate to be written together (one D1 batch, one hand-off per tenant). */
export const BATCH_WINDOW_MS = 100;
/** A batch is written at once when it has this many hits. */
export const MAX_BATCH_HITS = 200;

interface Batch {
  hits: TrackingHit[];
  db: Db;
  env: Pick<Bindings, "WEBHOOK_QUEUE">;
}
let open: Batch | null = null;

/**
 * Adds hits to the isolate's open batch and returns the promise that writes it, or null when the
 * hits joined a batch another request already owns (its `waitUntil` holds that write, which runs
 * BATCH_WINDOW_MS after the batch opened; no request waits on another request's promise). A busy
 * isolate writes one D1 batch per window instead of one per hit.
 */
export function queueTrackingHits(
  db: Db,
  env: Pick<Bindings, "WEBHOOK_QUEUE">,
  hits: TrackingHit[],
): Promise<void> | null {
  if (open && open.hits.length < MAX_BATCH_HITS) {
    open.hits.push(...hits);
    return null;
  }
  const batch: Batch = { hits: [...hits], db, env };
  open = batch;
  return new Promise<void>((resolve) => setTimeout(resolve, BATCH_WINDOW_MS)).then(() => {
    if (open === batch) open = null;
    return recordTrackingHits(batch.db, batch.env, batch.hits);
  });
}

/** The hits as events, each with its stable id. */
export async function trackingEvents(hits: TrackingHit[]): Promise<FlushedEvent[]> {
  const rows: FlushedEvent[] = [];
  for (const h of hits) {
    rows.push({
      id: await stableEventId(h),
      tenantId: h.tenantId,
      messageId: h.messageId,
      eventType: h.type,
      recipientEmail: h.recipient.toLowerCase(),
      timestamp: h.at,
      attempt: 0,
      metadata: h.metadata,
    });
  }
  return rows;
}

/**
 * Writes the events to D1 now (the unsubscribe page's POSTs, before they answer): their triggers
 * change suppressions in the order the requests came, so a later resubscribe is never undone by an
 * earlier unsubscribe's event landing after it. The hub's later write of the same ids changes nothing.
 */
export async function writeTrackingEvents(db: Db, rows: FlushedEvent[]): Promise<void> {
  if (rows.length > 0) await db.batch(insertEvents(db, rows));
}

/** D1 statements inserting `rows` into `events`; an id already there is kept (ON CONFLICT DO NOTHING). */
function insertEvents(db: Db, rows: FlushedEvent[]) {
  const values = rows.map((r) => ({
    id: r.id,
    tenantId: r.tenantId,
    messageId: r.messageId,
    eventType: r.eventType,
    recipientEmail: r.recipientEmail,
    timestamp: r.timestamp,
    attempt: 0,
    metadata: r.metadata as Record<string, unknown>,
  }));
  const [first, ...more] = chunkRows(values, 8).map((chunk) =>
    db.insert(events).values(chunk).onConflictDoNothing(),
  );
  return [first!, ...more] as const;
}

/** Writes the hits to D1 and hands them to webhooks (the fallback path). Errors are logged: the answer has gone already. */
export async function recordTrackingHits(
  db: Db,
  env: Pick<Bindings, "WEBHOOK_QUEUE">,
  hits: TrackingHit[],
): Promise<void> {
  try {
    const rows = await trackingEvents(hits);
    if (rows.length === 0) return;
    await db.batch(insertEvents(db, rows));
    await fanOutWebhookEvents(env, rows);
  } catch (err) {
    console.error(
      JSON.stringify({
        level: "error",
        msg: "tracking event not recorded",
        events: hits.map((h) => `${h.type}:${h.messageId}`),
        error: err instanceof Error ? err.message : String(err),
      }),
    );
  }
}

/** How long a hub keeps hits before writing them to D1 together. */
export const TRACKING_FLUSH_MS = 50;
/** After a failed D1 write, and as the alarm's backstop, the hub tries again this much later. */
export const TRACKING_RETRY_MS = 2_000;
/** Hits per D1 batch. */
const HITS_PER_FLUSH = 200;

/**
 * A hub shard's durable inbox of tracking hits (header, "Durable path"). `record` keeps the events
 * in the table `tracking_hit` (one row per event id: a replayed hit while it waits is one row) and
 * returns once they are in the object's storage; `flush` writes the waiting ones to D1 and, in one
 * synchronous block after D1's answer, stages them for the webhooks (`stage`, the hub's durable
 * hand-off) and deletes them. A flush repeated after a restart writes the same ids again, which D1
 * keeps once and the webhook queue posts once.
 */
export class TrackingInbox {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private flushing: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly sql: SqlStorage,
    private readonly d1: D1Database,
    private readonly stage: (events: FlushedEvent[]) => void,
    /** Arms the object's alarm by `at` at the latest (the backstop if the object stops). */
    private readonly armAlarmBy: (at: number) => Promise<void>,
  ) {
    sql.exec(`CREATE TABLE IF NOT EXISTS tracking_hit (
      event_id TEXT PRIMARY KEY,
      event TEXT NOT NULL,
      at INTEGER NOT NULL
    )`);
  }

  async record(events: FlushedEvent[]): Promise<{ recorded: number }> {
    const now = Date.now();
    let recorded = 0;
    for (const e of events) {
      const r = this.sql.exec(
        "INSERT OR IGNORE INTO tracking_hit (event_id, event, at) VALUES (?, ?, ?)",
        e.id,
        JSON.stringify(e),
        now,
      );
      if (r.rowsWritten > 0) recorded++;
    }
    await this.armAlarmBy(now + TRACKING_RETRY_MS);
    this.schedule(TRACKING_FLUSH_MS);
    return { recorded };
  }

  /** Hits kept and not yet in D1 (tests and stats). */
  waiting(): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM tracking_hit").one().n;
  }

  private schedule(delayMs: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, delayMs);
  }

  /** Writes every waiting hit (one flush at a time; a call during one makes it run again). */
  flush(): Promise<void> {
    if (this.flushing) {
      this.again = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      try {
        do {
          this.again = false;
          while (await this.flushOnce()) {
            // a full batch: more may wait
          }
        } while (this.again);
      } catch (err) {
        console.error(
          JSON.stringify({
            level: "error",
            msg: "tracking hits not written to D1; kept and tried again",
            waiting: this.waiting(),
            error: err instanceof Error ? err.message : String(err),
          }),
        );
        await this.armAlarmBy(Date.now() + TRACKING_RETRY_MS);
        this.schedule(TRACKING_RETRY_MS);
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  /** One D1 batch; true when it was full. */
  private async flushOnce(): Promise<boolean> {
    const rows = this.sql
      .exec<{ event_id: string; event: string }>(
        "SELECT event_id, event FROM tracking_hit ORDER BY at, event_id LIMIT ?",
        HITS_PER_FLUSH,
      )
      .toArray();
    if (rows.length === 0) return false;
    const list = rows.map((r) => JSON.parse(r.event) as FlushedEvent);
    const db = createDb(this.d1);
    await db.batch(insertEvents(db, list));
    // D1 has them: staged and deleted in one synchronous block (one implicit transaction).
    this.stage(list);
    this.sql.exec(
      "DELETE FROM tracking_hit WHERE event_id IN (SELECT value FROM json_each(?))",
      JSON.stringify(rows.map((r) => r.event_id)),
    );
    return rows.length === HITS_PER_FLUSH;
  }
}
