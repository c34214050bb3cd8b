/**
 * OriginHub: the single writer of in-flight delivery state for its shard of messages.
 *
 * Invariants (the outbox table in this object's SQLite storage):
 *  - A live message accepted by the API is in D1 (status queued) before it is enqueued here, and it
 *    leaves the outbox only after its final outcome has been written to D1. Nothing is held only in memory.
 *  - A row is `ready` (waiting for `due_at`), `leased` (handed to one origin link until `lease_until`)
 *    or `recording` (its result waits in the next D1 batch; back to `leased` if that write fails or the
 *    object restarts, since the result was not acknowledged and the origin sends it again).
 *  - `attempt` counts dispatches; the job id `<messageId>.<attempt>` names one dispatch, so a result for
 *    an older attempt is recognised and ignored, and a re-sent result for the current one is applied once.
 *  - When a link closes, the jobs its origin never acknowledged return to `ready` at once; acknowledged
 *    ones stay with that origin (it reports them over its next link) until their lease runs out (the alarm).
 *    An origin that dies mid-job therefore loses nothing: the job goes to the next origin (at-least-once).
 *  - Credits bound how many jobs a link holds: `hello.capacity` to start, `credit` frames for more.
 *
 * Origins connect with the WebSocket Hibernation API, so idle links cost nothing; per-link state
 * (node id, credits) lives in the socket attachment, which survives hibernation.
 */
import { DurableObject } from "cloudflare:workers";
import {
  jobIdFor,
  LINK_PROTOCOL_VERSION,
  parseOriginFrame,
  type DeliveryJob,
  type EdgeFrame,
  type OriginFrame,
} from "../../../shared/link/protocol.ts";
import { createRetrySchedule, type RetrySchedule } from "../../../shared/delivery/retry-schedule.ts";
import { createDb, type Db } from "../db/client.ts";
import { markSendingStatements, recordResultStatements } from "../db/messages.ts";
import { eventRow, planResult, type ResultPlan } from "../services/result-plan.ts";
import { loadConfig, type Bindings, type Config } from "../env.ts";
import { openDkimPrivateKey } from "../lib/dkim-key-box.ts";

/** What the send path hands the hub: everything to build the job, with the DKIM key still sealed. */
export interface OutboxEntry {
  messageId: string;
  tenantId: string;
  recipients: string[];
  message: DeliveryJob["message"];
  dkim: { domain: string; selector: string; privateKeySealed: string } | null;
  /** Unix ms before which the message must not be sent (scheduled sends); 0 = now. */
  notBefore: number;
}

interface LinkState {
  linkId: string;
  nodeId: string | null;
  credits: number;
}

interface OutboxRow {
  message_id: string;
  tenant_id: string;
  entry: string;
  recipients: string;
  attempt: number;
  state: "ready" | "leased" | "recording";
  due_at: number;
  lease_link: string | null;
  lease_until: number | null;
  enqueued_at: number;
  delivered: number;
  bounced: number;
  failed: number;
  acked: number;
  [key: string]: SqlStorageValue;
}

/** The columns a result needs. */
type AttemptRow = Pick<
  OutboxRow,
  "message_id" | "tenant_id" | "attempt" | "state" | "delivered" | "bounced" | "failed"
> & {
  [key: string]: SqlStorageValue;
};

export interface HubStats {
  ready: number;
  leased: number;
  links: { linkId: string; nodeId: string | null; credits: number }[];
}

/** Keep frames well under the 1 MiB Durable Object WebSocket message cap. */
const FRAME_BUDGET_BYTES = 900 * 1024;
/** The alarm never fires sooner than this after being set, so a busy hub does not spin on it. */
const MIN_ALARM_GAP_MS = 50;
/** Results are written to D1 together: at most this many per batch, waiting at most this long. */
const RESULT_BATCH_MAX = 100;
const RESULT_FLUSH_MS = 5;

export class OriginHub extends DurableObject<Bindings> {
  private readonly sql: SqlStorage;
  private readonly db: Db;
  private config!: Config;
  private retry!: RetrySchedule;
  private readonly keyCache = new Map<string, string>();
  private pendingResults: {
    ws: WebSocket;
    jobId: string;
    row: AttemptRow;
    plan: ResultPlan;
    /** Copies of the same result that arrived while it was pending; acknowledged with it. */
    duplicates: { ws: WebSocket; jobId: string }[];
  }[] = [];
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  /** Messages handed to origins since the last flush; their D1 status becomes `sending`. */
  private pendingSending: string[] = [];

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.db = createDb(env.DB);
    const loaded = loadConfig(env);
    if (!loaded.ok) throw new Error(`OriginHub misconfigured: ${loaded.problems.join("; ")}`);
    this.config = loaded.config;
    this.retry = createRetrySchedule(this.config.RETRY_SCHEDULE);
    // Pings are answered by the runtime without waking the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('{"type":"ping"}', '{"type":"pong"}'));
    ctx.blockConcurrencyWhile(async () => {
      this.sql.exec(`CREATE TABLE IF NOT EXISTS outbox (
        message_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        entry TEXT NOT NULL,
        recipients TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        lease_link TEXT,
        lease_until INTEGER,
        enqueued_at INTEGER NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0,
        bounced INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        acked INTEGER NOT NULL DEFAULT 0
      )`);
      this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_ready ON outbox(state, due_at)");
      this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_lease ON outbox(lease_link)");
      // The alarm's look-ups (earliest lease end, oldest message) stay O(log n) on a large outbox.
      this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_lease_until ON outbox(state, lease_until)");
      this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_age ON outbox(state, enqueued_at)");
      // Results being written when the object last stopped were not acknowledged; their origins re-send them.
      this.sql.exec("UPDATE outbox SET state = 'leased' WHERE state = 'recording'");
    });
  }

  // ---------------------------------------------------------------- RPC from the Worker

  /** Adds messages to the outbox. Idempotent per message id, so the sweeper may call it again. */
  async enqueue(entries: OutboxEntry[]): Promise<{ added: number }> {
    const now = Date.now();
    let added = 0;
    for (const e of entries) {
      const cursor = this.sql.exec(
        `INSERT INTO outbox (message_id, tenant_id, entry, recipients, state, due_at, enqueued_at)
         VALUES (?, ?, ?, ?, 'ready', ?, ?) ON CONFLICT(message_id) DO NOTHING`,
        e.messageId,
        e.tenantId,
        JSON.stringify(e),
        JSON.stringify(e.recipients),
        Math.max(now, e.notBefore),
        now,
      );
      added += cursor.rowsWritten;
    }
    await this.dispatch();
    return { added };
  }

  async stats(): Promise<HubStats> {
    const count = (state: string) =>
      (this.sql.exec("SELECT count(*) AS n FROM outbox WHERE state = ?", state).one().n as number) ?? 0;
    return {
      ready: count("ready"),
      leased: count("leased") + count("recording"),
      links: this.links().map(({ state }) => ({ ...state })),
    };
  }

  // ---------------------------------------------------------------- WebSocket link

  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("expected a WebSocket upgrade", { status: 426 });
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    const linkId = crypto.randomUUID();
    this.ctx.acceptWebSocket(server, [linkId]);
    server.serializeAttachment({ linkId, nodeId: null, credits: 0 } satisfies LinkState);
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, raw: string | ArrayBuffer): Promise<void> {
    const parsed = parseOriginFrame(raw);
    if (!parsed.ok) {
      this.send(ws, { type: "error", code: "invalid_frame", message: parsed.error });
      return;
    }
    const frame: OriginFrame = parsed.frame;
    const state = ws.deserializeAttachment() as LinkState;
    switch (frame.type) {
      case "hello": {
        if (frame.protocol !== LINK_PROTOCOL_VERSION) {
          this.send(ws, {
            type: "error",
            code: "protocol_mismatch",
            message: `edge speaks link protocol ${LINK_PROTOCOL_VERSION}, origin sent ${frame.protocol}`,
          });
          ws.close(1002, "protocol mismatch");
          return;
        }
        ws.serializeAttachment({
          ...state,
          nodeId: frame.nodeId,
          credits: frame.capacity,
        } satisfies LinkState);
        this.send(ws, {
          type: "welcome",
          protocol: LINK_PROTOCOL_VERSION,
          shard: this.shardNumber(),
          shards: this.config.HUB_SHARDS,
          leaseMs: this.config.LINK_LEASE_MS,
        });
        await this.dispatch();
        return;
      }
      case "credit": {
        ws.serializeAttachment({ ...state, credits: state.credits + frame.credits } satisfies LinkState);
        await this.dispatch();
        return;
      }
      case "ack": {
        const until = Date.now() + this.config.LINK_LEASE_MS;
        for (const jobId of frame.jobIds) {
          const { messageId, attempt } = splitJobId(jobId);
          this.sql.exec(
            "UPDATE outbox SET lease_until = ?, acked = 1 WHERE message_id = ? AND attempt = ? AND state = 'leased' AND lease_link = ?",
            until,
            messageId,
            attempt,
            state.linkId,
          );
        }
        await this.scheduleAlarm();
        return;
      }
      case "result":
        this.applyResult(ws, frame);
        return;
      case "ping":
        this.send(ws, { type: "pong" });
        return;
      case "pong":
        return;
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    await this.releaseLink(ws);
    // 1005 means "no status received"; echoing it back is invalid and leaves Node `ws` clients hanging.
    try {
      ws.close(code === 1005 ? 1000 : code, reason);
    } catch {
      // already closed
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    await this.releaseLink(ws);
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    this.sql.exec(
      "UPDATE outbox SET state = 'ready', lease_link = NULL, lease_until = NULL WHERE state = 'leased' AND lease_until <= ?",
      now,
    );
    await this.expireOldMessages(now);
    await this.dispatch();
  }

  // ---------------------------------------------------------------- internals

  private links(): { ws: WebSocket; state: LinkState }[] {
    return this.ctx
      .getWebSockets()
      .map((ws) => ({ ws, state: ws.deserializeAttachment() as LinkState | null }))
      .filter((l): l is { ws: WebSocket; state: LinkState } => l.state !== null && l.state.nodeId !== null);
  }

  private shardNumber(): number {
    const name = this.ctx.id.name ?? "hub-0";
    return Number(name.replace(/^hub-/, "")) || 0;
  }

  private send(ws: WebSocket, frame: EdgeFrame): boolean {
    return this.sendRaw(ws, JSON.stringify(frame));
  }

  private sendRaw(ws: WebSocket, text: string): boolean {
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  private async releaseLink(ws: WebSocket): Promise<void> {
    const state = ws.deserializeAttachment() as LinkState | null;
    if (!state) return;
    ws.serializeAttachment({ ...state, nodeId: null, credits: 0 } satisfies LinkState);
    // Jobs the origin never acknowledged go straight back to the outbox. Acknowledged ones stay leased:
    // the node holds them and will report over its next link; the lease timer covers a node that died.
    this.sql.exec(
      "UPDATE outbox SET state = 'ready', lease_link = NULL, lease_until = NULL WHERE state = 'leased' AND lease_link = ? AND acked = 0",
      state.linkId,
    );
    await this.dispatch();
  }

  /** Hands due jobs to links that have credit, then re-arms the alarm. */
  private async dispatch(): Promise<void> {
    const now = Date.now();
    const sockets = this.links()
      .sort((a, b) => b.state.credits - a.state.credits)
      .map((l) => l.ws);
    for (const ws of sockets) {
      // Read the link's state here, not before the loop: an earlier iteration awaited, and another
      // dispatch may have spent this link's credit meanwhile.
      const state = ws.deserializeAttachment() as LinkState | null;
      if (!state || state.nodeId === null || state.credits <= 0) continue;
      const rows = this.sql
        .exec<OutboxRow>(
          "SELECT * FROM outbox WHERE state = 'ready' AND due_at <= ? ORDER BY due_at LIMIT ?",
          now,
          state.credits,
        )
        .toArray();
      if (rows.length === 0) break;
      // Lease synchronously before any await, so a concurrent dispatch cannot pick the same rows.
      const leaseUntil = now + this.config.LINK_LEASE_MS;
      for (const row of rows) {
        row.attempt += 1;
        this.sql.exec(
          "UPDATE outbox SET state = 'leased', attempt = ?, lease_link = ?, lease_until = ?, acked = 0 WHERE message_id = ?",
          row.attempt,
          state.linkId,
          leaseUntil,
          row.message_id,
        );
        this.pendingSending.push(row.message_id);
      }
      ws.serializeAttachment({ ...state, credits: state.credits - rows.length } satisfies LinkState);
      this.scheduleFlush();
      const jobs = await Promise.all(rows.map((row) => this.toJob(row)));
      this.sendJobs(ws, jobs);
    }
    await this.scheduleAlarm();
  }

  /** Sends jobs in frames under the size budget; each job is serialized once, straight into its frame. */
  private sendJobs(ws: WebSocket, jobs: DeliveryJob[]): void {
    let parts: string[] = [];
    let size = 0;
    const flush = () => {
      // If sending fails the socket is closing; webSocketClose returns these leases to the outbox.
      if (parts.length > 0) this.sendRaw(ws, `{"type":"jobs","jobs":[${parts.join(",")}]}`);
      parts = [];
      size = 0;
    };
    for (const job of jobs) {
      const json = JSON.stringify(job);
      if (parts.length > 0 && size + json.length > FRAME_BUDGET_BYTES) flush();
      parts.push(json);
      size += json.length + 1;
    }
    flush();
  }

  private async toJob(row: OutboxRow): Promise<DeliveryJob> {
    const entry = JSON.parse(row.entry) as OutboxEntry;
    let dkim: DeliveryJob["dkim"] = null;
    if (entry.dkim) {
      let pem = this.keyCache.get(entry.dkim.privateKeySealed);
      if (!pem) {
        pem = await openDkimPrivateKey(this.config, entry.dkim);
        if (this.keyCache.size > 500) this.keyCache.clear();
        this.keyCache.set(entry.dkim.privateKeySealed, pem);
      }
      dkim = { domain: entry.dkim.domain, selector: entry.dkim.selector, privateKeyPem: pem };
    }
    return {
      jobId: jobIdFor(row.message_id, row.attempt),
      messageId: row.message_id,
      tenantId: row.tenant_id,
      attempt: row.attempt,
      recipients: JSON.parse(row.recipients) as string[],
      message: entry.message,
      dkim,
    };
  }

  /**
   * Validates a result and queues it for the next D1 write. Results arriving within RESULT_FLUSH_MS
   * are recorded in one D1 batch, so a busy hub costs one round trip per batch, not per message.
   */
  private applyResult(ws: WebSocket, frame: Extract<OriginFrame, { type: "result" }>): void {
    const row = this.sql
      // Not the entry itself: a result needs only the attempt bookkeeping, and entries are kilobytes.
      .exec<AttemptRow>(
        `SELECT message_id, tenant_id, attempt, state, delivered, bounced, failed
         FROM outbox WHERE message_id = ?`,
        frame.messageId,
      )
      .toArray()[0];
    if (row && row.attempt === frame.attempt && row.state === "recording") {
      // A re-sent copy of a result whose write is pending: acknowledge it only once that write succeeds.
      this.pendingResults
        .find((p) => p.row.message_id === row.message_id)
        ?.duplicates.push({ ws, jobId: frame.jobId });
      return;
    }
    if (!row || row.attempt !== frame.attempt || row.state !== "leased") {
      // Already recorded, superseded by a later attempt, or unknown: nothing to apply, stop the resends.
      this.send(ws, { type: "resultAck", jobIds: [frame.jobId] });
      return;
    }
    // `recording` keeps a re-sent copy of this result from being queued twice while the write is pending.
    this.sql.exec("UPDATE outbox SET state = 'recording' WHERE message_id = ?", row.message_id);
    this.pendingResults.push({
      ws,
      jobId: frame.jobId,
      row,
      plan: planResult(row, frame.recipients, this.retry, Date.now()),
      duplicates: [],
    });
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.pendingResults.length + this.pendingSending.length >= RESULT_BATCH_MAX) void this.flushResults();
    else this.flushTimer ??= setTimeout(() => void this.flushResults(), RESULT_FLUSH_MS);
  }

  /**
   * One D1 batch for everything that happened since the last flush: messages handed to origins
   * (status sending, attempts + 1) first, then results, so a fast result is never overwritten.
   */
  private async flushResults(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const batch = this.pendingResults.splice(0);
    const sending = this.pendingSending.splice(0);
    if (batch.length === 0 && sending.length === 0) return;
    const now = Date.now();
    const sendingStatements = sending.length > 0 ? markSendingStatements(this.db, sending, now) : [];
    const statements = batch.flatMap(({ row, plan }) =>
      recordResultStatements(this.db, {
        messageId: row.message_id,
        now,
        events: plan.events(row.tenant_id),
        recipientStatuses: plan.recipientStatuses,
        status: plan.status,
        ...(plan.status === "delivered" ? { deliveredAt: now } : {}),
        errorMessage: plan.errorMessage,
        nextAttemptAt: plan.retryRecipients.length > 0 ? plan.retryAt : null,
      }),
    );
    try {
      await this.db.batch([...sendingStatements, ...statements] as [never]);
    } catch (err) {
      // Leave the leases in place: the origin re-sends unacknowledged results, and the lease timer backs us up.
      // The `sending` marks go into the next flush.
      this.pendingSending.unshift(...sending);
      for (const { row } of batch) {
        this.sql.exec(
          "UPDATE outbox SET state = 'leased' WHERE message_id = ? AND state = 'recording'",
          row.message_id,
        );
      }
      console.error(
        JSON.stringify({
          level: "error",
          msg: "recording results failed",
          count: batch.length,
          error: String(err),
        }),
      );
      return;
    }

    const acks = new Map<WebSocket, string[]>();
    for (const { ws, jobId, row, plan, duplicates } of batch) {
      if (plan.retryRecipients.length > 0) {
        this.sql.exec(
          `UPDATE outbox SET state = 'ready', recipients = ?, due_at = ?, lease_link = NULL, lease_until = NULL,
             delivered = ?, bounced = ?, failed = ? WHERE message_id = ?`,
          JSON.stringify(plan.retryRecipients),
          plan.retryAt,
          plan.totals.delivered,
          plan.totals.bounced,
          plan.totals.failed,
          row.message_id,
        );
      } else {
        this.sql.exec("DELETE FROM outbox WHERE message_id = ?", row.message_id);
      }
      for (const to of [{ ws, jobId }, ...duplicates])
        acks.set(to.ws, [...(acks.get(to.ws) ?? []), to.jobId]);
    }
    for (const [ws, jobIds] of acks) this.send(ws, { type: "resultAck", jobIds });
    await this.scheduleAlarm();
  }

  /** Messages nobody could deliver within the maximum queue age end as failed, never silently. */
  private async expireOldMessages(now: number): Promise<void> {
    const rows = this.sql
      .exec<OutboxRow>(
        "SELECT * FROM outbox WHERE state = 'ready' AND enqueued_at <= ? LIMIT 100",
        now - this.config.MAX_QUEUE_AGE_MS,
      )
      .toArray();
    for (const row of rows) {
      const recipients = JSON.parse(row.recipients) as string[];
      const statements = recordResultStatements(this.db, {
        messageId: row.message_id,
        now,
        events: recipients.map((r) =>
          eventRow(row, "dropped", r, now, { reason: "expired: not delivered within the maximum queue age" }),
        ),
        recipientStatuses: recipients.map((email) => ({ email: email.toLowerCase(), status: "failed" })),
        status: row.delivered > 0 ? "delivered" : "failed",
        errorMessage: "Expired in queue: no origin delivered it within the maximum queue age",
        nextAttemptAt: null,
      });
      try {
        await this.db.batch(statements as [never]);
        this.sql.exec("DELETE FROM outbox WHERE message_id = ?", row.message_id);
      } catch (err) {
        console.error(JSON.stringify({ level: "error", msg: "expiring message failed", error: String(err) }));
      }
    }
  }

  private async scheduleAlarm(): Promise<void> {
    const next = this.sql
      .exec<{ t: number | null }>(
        `SELECT min(t) AS t FROM (
           SELECT min(due_at) AS t FROM outbox WHERE state = 'ready'
           UNION ALL SELECT min(lease_until) FROM outbox WHERE state = 'leased'
           UNION ALL SELECT min(enqueued_at) + ? FROM outbox WHERE state = 'ready')`,
        this.config.MAX_QUEUE_AGE_MS,
      )
      .one().t;
    if (next === null) return;
    // Ready rows that are already due wait for link credit, not for time: no need to spin the alarm.
    const hasCredit = this.links().some((l) => l.state.credits > 0);
    const now = Date.now();
    const readyDue = next <= now;
    const wake = readyDue && !hasCredit ? this.nextNonDueWake(now) : Math.max(next, now + MIN_ALARM_GAP_MS);
    if (wake === null) return;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > wake || current < now) await this.ctx.storage.setAlarm(wake);
  }

  /** The earliest future time something changes without a link acting: a lease ending or a retry falling due. */
  private nextNonDueWake(now: number): number | null {
    const t = this.sql
      .exec<{ t: number | null }>(
        `SELECT min(t) AS t FROM (
           SELECT min(due_at) AS t FROM outbox WHERE state = 'ready' AND due_at > ?
           UNION ALL SELECT min(lease_until) FROM outbox WHERE state = 'leased'
           UNION ALL SELECT min(enqueued_at) + ? FROM outbox WHERE state = 'ready')`,
        now,
        this.config.MAX_QUEUE_AGE_MS,
      )
      .one().t;
    return t === null ? null : Math.max(t, now + MIN_ALARM_GAP_MS);
  }
}

function splitJobId(jobId: string): { messageId: string; attempt: number } {
  const dot = jobId.lastIndexOf(".");
  return { messageId: jobId.slice(0, dot), attempt: Number(jobId.slice(dot + 1)) };
}
