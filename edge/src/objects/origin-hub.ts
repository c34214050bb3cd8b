/**
 * OriginHub: where a live message is accepted, and the single writer of its delivery state, for its
 * shard of messages (docs/architecture.md, "The accept path"). The link it speaks and the timing rules
 * are in docs/link-protocol.md; the frames in shared/link/protocol.ts; shard names and ids in
 * edge/src/lib/shards.ts.
 *
 * Invariants (tables in this object's SQLite storage):
 *  - Acceptance. `accept` writes every message of one API request (its outbox row, and its catalog
 *    rows: the `messages` row, its recipients, its `processed` events) in ONE synchronous SQLite
 *    transaction (`ctx.storage.transactionSync`), and returns only after it committed; the Worker
 *    answers 202 then. A request's messages are all accepted or none are. Nothing is held only in memory.
 *  - The catalog. D1 is the catalog the read APIs query, written only by the hub's batched flushes.
 *    An accepted message's catalog rows wait in the `catalog` table until they are in D1: a message
 *    is catalogued exactly when it has no `catalog` row. A flush writes them with INSERT … ON CONFLICT
 *    DO NOTHING keyed by their ids, and only after D1 took the batch drops the copies, in one
 *    synchronous block: a replayed flush or a restarted hub never duplicates or loses a row. A failed
 *    flush is retried (timer, and the alarm as backstop) until D1 takes it.
 *    Whether the table may hold rows is also kept in memory (`catalogWaiting`: false only once a
 *    flush found it empty, true from the next accept), so the flushes of results read nothing for
 *    the catalog while every message is catalogued; the cron's flush() and the alarm read the table.
 *  - Webhooks. The events a D1 write made (a flush, an expiry, an inbound report) are staged in
 *    `webhook_handoff` in the same synchronous block that notes the write, and leave it only when
 *    the tenant's WebhookQueue took them (services/webhook-handoff.ts): every event reaches the queue
 *    at least once, and the queue de-duplicates.
 *  - Catalog before results. A D1 batch writes catalog rows first, then `sending` marks, then results;
 *    a mark or result for a message that is neither catalogued nor in this batch's catalog rows waits
 *    for a later batch. So no update for a message reaches D1 before its row does.
 *  - Idempotency. An accept with an Idempotency-Key records (tenant, key) → body hash + message ids in
 *    the same transaction; within IDEMPOTENCY_TTL_MS a second accept with that key returns the first
 *    one's ids (same hash) or is refused (another hash). Accepts run one at a time here, so concurrent
 *    duplicates create one set of messages.
 *  - A row is `ready` (waiting for `due_at`), `leased` (handed to one origin process, `lease_node` +
 *    `lease_boot`, over link `lease_link`, until `lease_until`) or `recording` (its outcome waits in the
 *    next D1 batch). When that write fails, or the object restarts, a `recording` row goes back: to
 *    `leased` for an origin's result (not acknowledged, so the origin sends it again), to `ready` for an
 *    outcome the hub decided itself. Building the D1 statements is part of that write: no row can stay
 *    `recording` because the batch could not be built. A row leaves the outbox only after its final
 *    outcome is in D1 (so after its catalog rows are).
 *  - Two counters: `dispatches` counts hand-overs and names the job (`<messageId>.<dispatches>`), so a
 *    result for an older dispatch is recognised and ignored and a re-sent one is applied once;
 *    `deferrals` counts results with deferred recipients and alone indexes the retry schedule, so link
 *    drops and expired leases never use up retry steps.
 *  - Each row becomes a job (DKIM keys opened, UTF-8 size measured) BEFORE it is leased or costs a credit.
 *    A row that cannot become a job (one of its keys does not open; alone it exceeds FRAME_BUDGET_BYTES) fails
 *    that one message through the D1 result path, with an error_message and a `dropped` event per
 *    recipient; every other row of the batch goes out.
 *  - A jobs frame is at most FRAME_BUDGET_BYTES of UTF-8 (under Cloudflare's 1 MiB WebSocket message
 *    cap). A frame that cannot be sent puts its jobs back to `ready` at once and its credits back on the link.
 *  - Timing, with L = LINK_LEASE_MS: a lease ends L after the origin's last `ack` for the job; the origin
 *    renews every job it holds every L/5 and gives each job a deadline of 0.4 × L from its start, and its
 *    claim on the message (JOB_CLAIM_TTL_MS) outlives L: job deadline < lease < claim.
 *  - When a link closes, jobs its origin never acknowledged return to `ready` at once; acknowledged ones
 *    stay with that origin process (it renews them over its next link) until their lease runs out (the
 *    alarm). A hello from the same node id with a new boot id means that process is gone: everything it
 *    held returns to `ready` at once, its remaining links are closed, and its boot id is retired (a
 *    hello with a retired boot id is refused, so two processes under one NODE_ID cannot take turns).
 *  - Credits bound what a link holds: `hello.capacity` to start, `credit` frames for more. A `release`
 *    returns the named jobs and zeroes the link's credits (the origin is full; it grants again when not).
 *  - Frames are handled in arrival order. After BUSY_SLICE_MS of frames back to back the hub pauses
 *    BREATH_MS (frames arriving meanwhile wait on the same pause, in order), so the runtime's event loop
 *    goes idle and serves new connections (`takeBreath`).
 *  - Storage. A message is one `outbox` row (its delivery state: small, rewritten on every change) and
 *    one `outbox_entry` row (its job payload, kilobytes: written once with the outbox row in the same
 *    transaction, read at each dispatch, deleted with it), plus its `catalog` row until D1 has it. The
 *    outbox has four indexes, each one a query needs (OUTBOX_SQL; their plans are checked in
 *    test/edge/hub-storage.test.ts): `outbox_ready` (state, due_at) for dispatch; the partial
 *    `outbox_lease_end` and `outbox_holder` for lease expiry and a node's leases (only rows with a
 *    lease are in them); the partial `outbox_ready_age` for queue age (only ready rows). One statement
 *    per frame or batch, not per row: the leases of a dispatch, the renewals of an `ack`, the rows of a
 *    results frame (read, then marked `recording`), and what one D1 batch settles (catalog copies
 *    dropped, finished messages deleted). An object written by an older layout (payload inside the
 *    row, a `catalogued` flag, other indexes) is migrated in place, in one transaction, when it starts
 *    (`upgradeOutbox`). A message that ends `failed` or `bounced` leaves a copy of its payload in
 *    `outbox_retry` for POST /v3/messages/{id}/retry, within a bounded window (services/message-retry.ts).
 *  - Scheduling, pauses, cancels (services/batch-holds.ts): a message is not due before its send_at
 *    (`due_at`; its queue age counts from then too). A row of a paused batch is `held`; a cancelled one
 *    is `cancelled` (a durable mark) until its outcome, status `cancelled`, is queued for D1. Neither is
 *    ever due, and dispatch checks each row's batch again before leasing it, so a cancel and a dispatch,
 *    both running inside this object, have exactly one winner.
 *  - Memory is bounded with back-pressure: past MAX_PENDING_SENDING `sending` marks waiting for D1 the
 *    hub stops dispatching (rows stay `ready`) until a D1 write succeeds; results waiting for D1 are
 *    dropped from memory when a write fails, since their origins re-send them. Catalog rows wait in
 *    storage, not in memory.
 *
 * Origins connect with the WebSocket Hibernation API, so idle links cost nothing; per-link state
 * (node id, boot id, credits, counters) lives in the socket attachment, which survives hibernation.
 */
import { DurableObject } from "cloudflare:workers";
import {
  FRAME_BUDGET_BYTES,
  jobIdFor,
  LINK_PROTOCOL_VERSION,
  parseOriginFrame,
  splitJobId,
  utf8ByteLength,
  isChannelJob,
  type ChannelJob,
  type DeliveryJob,
  type EdgeFrame,
  type LinkResult,
  type OriginFrame,
  type RecipientOutcome,
} from "../../../shared/link/protocol.ts";
import { channelJobOf } from "../services/channel-jobs.ts";
import type { ChannelEntry } from "../services/senderkit/channel-send.ts";
import { createRetrySchedule, type RetrySchedule } from "../../../shared/delivery/retry-schedule.ts";
import { createDb, type Db } from "../db/client.ts";
import {
  catalogStatements,
  markSendingStatements,
  recordResultStatements,
  resultStatements,
  type EventRow,
  type MessageRow,
  type NewMessage,
} from "../db/messages.ts";
import { eventRow, planResult, type ResultPlan } from "../services/result-plan.ts";
import { catalogMessageRow, type AcceptedMessage, type CatalogRows } from "../services/outbox-entry.ts";
import { loadConfig, type Bindings, type Config } from "../env.ts";
import { trackingWelcome } from "../services/tracking-key.ts";
import {
  dropPlan,
  suppressionDrops,
  type DropDecision,
  type SuppressionPolicy,
} from "../services/suppression-check.ts";
import { openDkimPrivateKey, secretsKeyring, type DkimKeyKind } from "../lib/dkim-key-box.ts";
import { inboundStatements, loadInboundTargets } from "../db/inbound-events.ts";
import { planInboundEvents } from "../services/inbound-event.ts";
import {
  ensureHandoffTable,
  HANDOFF_SQL,
  LEASE_MS as HANDOFF_LEASE_MS,
  WebhookHandoff,
} from "../services/webhook-handoff.ts";
import { TrackingInbox } from "../services/tracking-events.ts";
import type { FlushedEvent } from "../services/webhook-events.ts";
import { allShards, hubName, layoutOf, parseHubName } from "../lib/shards.ts";
import { poolsOfNode, recordAnnouncedPools, unknownPool } from "../services/ip-pools.ts";
import {
  CANCELLED_BY_BATCH,
  CANCELLED_BY_REQUEST,
  FAILED_BY_REQUEST,
  cancelledRows,
  ensureBatchTables,
  expireHeld,
  cancelPlan,
  forgetMessages,
  heldAmong,
  holdBatch,
  idleRowsOfBatch,
  markCancelled,
  placeInBatch,
  recordHold,
  UNRECORDED_STATE_SQL,
} from "../services/batch-holds.ts";
import type { ScheduledSendStatus } from "../db/schema.ts";
import {
  RETRIABLE_FINAL,
  RETRY_CLAIM_MS,
  claimKept,
  dropKept,
  ensureRetryTable,
  keepForRetry,
  keptMessage,
  pruneKept,
  retryCatalogStatements,
  type KeptEnd,
} from "../services/message-retry.ts";
import { heldStages, MAX_PENDING_STAGES, stageStatements, type Stage } from "../services/message-stages.ts";
import { skCatalogStatements, type SkMessageRow } from "../db/sk-messages.ts";
import {
  acceptTest as skAcceptTest,
  cancelTest as skCancelTest,
  ensureSkTestTables,
  tick as skTestTick,
  view as skTestView,
  type SkCancelOutcome,
  type SkTestAccept,
  type SkTestAcceptResult,
} from "../services/senderkit/test-lifecycle.ts";

/** What the send path hands the hub: everything to build the job, with the DKIM key still sealed. */
/** `asm` and the `bypass_*` settings (SuppressionPolicy) are what the check before dispatch reads. */
export interface OutboxEntry extends SuppressionPolicy {
  messageId: string;
  tenantId: string;
  recipients: string[];
  message: DeliveryJob["message"];
  dkim: {
    domainId?: string;
    domain: string;
    selector: string;
    privateKeySealed: string;
    /** The domain's Ed25519 key for dual signing, when it has one that checked out in DNS. */
    ed25519?: { selector: string; privateKeySealed: string };
  } | null;
  /** Unix ms before which the message must not be sent (scheduled sends); 0 = now. */
  notBefore: number;
  /** The request's `ip_pool_name`: becomes the job's `ipPool` (docs/link-protocol.md#ip-pools). */
  ipPool?: string;
  /** The request's `batch_id`: a pause or cancel of that batch holds or cancels it (services/batch-holds.ts). */
  batchId?: string;
  /** Set by POST /v3/messages/{id}/retry: the job's `freshFrom` (services/message-retry.ts). */
  freshFrom?: number;
  /**
   * Set for an SMS, push or web push message (services/senderkit/channel-send.ts): it goes out as a
   * channel job (`channelJobs`, protocol 6; every linked origin speaks it, the hello refuses any other
   * version) with the connection's credentials opened at dispatch, like DKIM keys; `message` is unused.
   */
  channel?: ChannelEntry;
}

/** What POST /v3/messages/{id}/cancel found in the shard (docs/api/sendgrid.md#cancelling-a-message). */
export type CancelOutcome =
  /** Cancelled now, or already (`already`: by an earlier request; /v1's DELETE answers that 409). */
  | { outcome: "cancelled"; already?: true }
  /** An origin has it, or has had it (some recipients have an outcome): too late. */
  | { outcome: "dispatched" }
  /** Not in this shard's outbox (finished, or never here): the catalog says what it is. */
  | { outcome: "absent" }
  /** Ended by the other request already (/fail, or a cancel), with that status, being written. */
  | { outcome: "ended"; status: string };

/** What POST /v3/messages/{id}/retry did (docs/api/sendgrid.md#retrying-a-message). */
export type RetryOutcome =
  /** Back in the queue, due now (or a retry of it is under way). */
  | { outcome: "requeued" }
  /** Waiting for its first delivery attempt (status queued): nothing to retry. */
  | { outcome: "waiting" }
  /** The catalog could not be updated: nothing changed, try again. */
  | { outcome: "unavailable" }
  | Exclude<CancelOutcome, { outcome: "cancelled" }>;

/** What POST /v3/messages/{id}/fail found: ended failed now (or already), held by an origin, or not here. */
export type FailOutcome = { outcome: "failed" } | Exclude<CancelOutcome, { outcome: "cancelled" }>;

/** One API request's live messages, accepted together or not at all. */
export interface AcceptRequest {
  tenantId: string;
  messages: AcceptedMessage[];
  /** Idempotency-Key of the request and a SHA-256 (hex) of its body. */
  idempotency?: { key: string; bodyHash: string };
}

export type AcceptResult =
  | { ok: true; messageIds: string[]; replayed: boolean }
  | { ok: false; reason: "idempotency_conflict" }
  /** A message names an IP pool no origin announced (services/ip-pools.ts): nothing was accepted. */
  | { ok: false; reason: "unknown_ip_pool"; ipPool: string };

/** A message as its shard knows it before the catalog flush (GET /v3/messages/{id}, read-your-writes). */
export interface HubMessageView {
  message: MessageRow;
  events: EventRow[];
  /** Its SenderKit row, for a /v1 send (docs/api/senderkit.md#messages). */
  senderkit?: SkMessageRow | null;
}

interface LinkState {
  linkId: string;
  nodeId: string | null;
  /** The origin process behind this link (hello.bootId). */
  bootId: string | null;
  credits: number;
  /** Frames this link's origin sent that the hub has fully handled (tests wait on it). */
  framesIn: number;
  /** Jobs pushed over this link. */
  jobsOut: number;
}

interface OutboxRow {
  message_id: string;
  tenant_id: string;
  recipients: string;
  dispatches: number;
  deferrals: number;
  /** `held`: its batch is paused; `cancelled`: its outcome waits to be queued (services/batch-holds.ts). */
  state: "ready" | "leased" | "recording" | "held" | "cancelled";
  due_at: number;
  lease_link: string | null;
  lease_node: string | null;
  lease_boot: string | null;
  lease_until: number | null;
  enqueued_at: number;
  delivered: number;
  bounced: number;
  failed: number;
  acked: number;
  [key: string]: SqlStorageValue;
}

/** A row as dispatch reads it: with its job payload (outbox_entry.entry; null only if it went missing). */
type DispatchRow = OutboxRow & { entry: string | null };

/** The columns a result needs. */
type AttemptRow = Pick<
  OutboxRow,
  | "message_id"
  | "tenant_id"
  | "dispatches"
  | "deferrals"
  | "state"
  | "delivered"
  | "bounced"
  | "failed"
  | "enqueued_at"
> & {
  [key: string]: SqlStorageValue;
};

export interface HubStats {
  ready: number;
  leased: number;
  links: {
    linkId: string;
    nodeId: string | null;
    bootId: string | null;
    credits: number;
    framesIn: number;
    jobsOut: number;
  }[];
}

/** An outcome waiting for the next D1 batch. */
interface PendingResult {
  /** The link that reported it, to acknowledge it; null for an outcome the hub decided (nothing to ack). */
  ws: WebSocket | null;
  jobId: string | null;
  row: AttemptRow;
  plan: ResultPlan;
  /** Copies of the same result that arrived while it was pending; acknowledged with it. */
  duplicates: { ws: WebSocket; jobId: string }[];
}

/** A row turned into a job, serialized once, ready for a frame. */
interface BuiltJob {
  row: DispatchRow;
  dispatch: number;
  json: string;
  bytes: number;
  /** A channel job: it goes in the frame's `channelJobs` array. */
  channel?: boolean;
}

const FRAME_PREFIX = '{"type":"jobs","jobs":[';
const FRAME_CHANNEL = '],"channelJobs":[';
const FRAME_SUFFIX = "]}";
// Counted in every frame, whether it carries channel jobs or not.
const FRAME_OVERHEAD = FRAME_PREFIX.length + FRAME_CHANNEL.length + FRAME_SUFFIX.length;
/** The largest job that fits a frame on its own. */
const MAX_JOB_BYTES = FRAME_BUDGET_BYTES - FRAME_OVERHEAD;
/** The alarm never fires sooner than this after being set, so a busy hub does not spin on it. */
const MIN_ALARM_GAP_MS = 50;
/** Results are written to D1 together: at most this many per batch, waiting at most this long. */
const RESULT_BATCH_MAX = 100;
const RESULT_FLUSH_MS = 5;
/** While D1 fails, at most this many `sending` marks wait in memory; past it, dispatch pauses. */
const MAX_PENDING_SENDING = 10_000;
/** After a failed D1 write, the next try of the waiting marks. */
const FLUSH_RETRY_MS = 1_000;
/** A message the hub failed itself whose D1 write failed is tried again after this. */
const UNSENDABLE_RETRY_MS = 30_000;
/** After a failed suppression check, how long due rows wait before the next one (nothing is sent meanwhile). */
const SUPPRESSION_RETRY_MS = 2_000;
/** Frame pacing (OriginHub#takeBreath): after this long busy with frames, a pause of BREATH_MS. */
export const BUSY_SLICE_MS = 50;
export const BREATH_MS = 5;
/** At most this many messages' catalog rows (and about this many bytes of them) per D1 batch. */
const CATALOG_BATCH_MAX = 100;
const CATALOG_BATCH_BYTES = 8 * 1024 * 1024;
/** An Idempotency-Key is remembered this long after its request was accepted (docs/api/sendgrid.md). */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

/**
 * The outbox queries whose plan matters on a large outbox (test/edge/hub-storage.test.ts checks
 * that each one searches an index, never scans the table). A `+state` term is kept out of index
 * choice on purpose, so the planner takes the index named in the comment.
 */
export const OUTBOX_SQL = {
  /**
   * Rows due at ?1 for dispatch, oldest due first (outbox_ready), at most ?2, with their payload
   * (primary key): rows of no IP pool, or of one of the pools in ?3 (a JSON list: the node's).
   */
  due: `SELECT o.*, e.entry FROM outbox o LEFT JOIN outbox_entry e ON e.message_id = o.message_id
        WHERE o.state = 'ready' AND o.due_at <= ?1
          AND (o.ip_pool IS NULL OR o.ip_pool IN (SELECT value FROM json_each(?3)))
        ORDER BY o.due_at LIMIT ?2`,
  /**
   * When the alarm must fire (each term O(log n)): the next ready row due at or after ?1 (outbox_ready),
   * the next lease end (outbox_lease_end), the oldest ready row's queue age ?2 (outbox_ready_age),
   * ?3 while catalog rows wait, and the next webhook hand-off (services/webhook-handoff.ts).
   */
  nextWake: `SELECT min(t) AS t FROM (
      SELECT min(due_at) AS t FROM outbox WHERE state = 'ready' AND due_at >= ?1
      UNION ALL SELECT * FROM (SELECT lease_until FROM outbox WHERE lease_until IS NOT NULL AND +state = 'leased'
        ORDER BY lease_until LIMIT 1)
      UNION ALL SELECT * FROM (SELECT enqueued_at + ?2 FROM outbox INDEXED BY outbox_ready_age WHERE state = 'ready'
        ORDER BY enqueued_at LIMIT 1)
      UNION ALL SELECT * FROM (SELECT ?3 FROM catalog LIMIT 1)
      UNION ALL ${HANDOFF_SQL.next})`,
  /** Ready rows past the maximum queue age whose catalog rows are in D1 (outbox_ready_age). */
  expired: `SELECT * FROM outbox o INDEXED BY outbox_ready_age WHERE enqueued_at <= ? AND state = 'ready'
      AND NOT EXISTS (SELECT 1 FROM catalog c WHERE c.message_id = o.message_id) LIMIT 100`,
  /**
   * Renewal (`ack`): ?3 is a JSON list of [message id, dispatch]; each row is found by its primary key
   * (the `+` terms keep the planner from walking an index of the outbox and the list for each row).
   * Also while a result is being recorded (header: an ack lost then could let a D1 outage hand the job out twice).
   */
  renew: `UPDATE outbox SET lease_until = ?1, acked = 1, lease_link = ?2
    FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS dispatch FROM json_each(?3)) AS j
    WHERE outbox.message_id = j.id AND outbox.dispatches = j.dispatch AND +outbox.state IN ('leased', 'recording')
      AND +outbox.lease_node = ?4 AND +outbox.lease_boot = ?5`,
  /** Dispatch: ?5 is a JSON list of [message id, new dispatch]; a row is leased only if still ready at the one before. */
  lease: `UPDATE outbox SET state = 'leased', dispatches = j.dispatch, lease_link = ?1, lease_node = ?2,
      lease_boot = ?3, lease_until = ?4, acked = 0
    FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS dispatch FROM json_each(?5)) AS j
    WHERE outbox.message_id = j.id AND +outbox.state = 'ready' AND outbox.dispatches = j.dispatch - 1
    RETURNING outbox.message_id`,
  /** The rows a results frame names (?: JSON list of message ids), by primary key. */
  attempts: `SELECT message_id, tenant_id, dispatches, deferrals, state, delivered, bounced, failed, enqueued_at
    FROM outbox WHERE message_id IN (SELECT value FROM json_each(?))`,
  recording: "UPDATE outbox SET state = 'recording' WHERE message_id IN (SELECT value FROM json_each(?))",
  finished: "DELETE FROM outbox WHERE message_id IN (SELECT value FROM json_each(?))",
  /** Leases that ran out (outbox_lease_end). */
  expireLeases: `UPDATE outbox SET state = 'ready', lease_link = NULL, lease_node = NULL, lease_boot = NULL,
      lease_until = NULL, acked = 0
    WHERE lease_until <= ? AND +state = 'leased'`,
} as const;

export class OriginHub extends DurableObject<Bindings> {
  private readonly sql: SqlStorage;
  private readonly db: Db;
  private config!: Config;
  private retry!: RetrySchedule;
  private readonly keyCache = new Map<string, string>();
  private pendingResults: PendingResult[] = [];
  /** Every outcome queued or being written, by message id: the rows in state `recording`. */
  private readonly recording = new Map<string, PendingResult>();
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  /** When the pending flush timer fires. */
  private flushAt = 0;
  /** Messages handed to origins since the last flush; their D1 status becomes `processing`. */
  private pendingSending: string[] = [];
  /** Later lifecycle stages origins reported on their renewals, waiting for D1 (services/message-stages.ts). */
  private readonly pendingStages = new Map<string, Stage>();
  /** Marks taken out of `pendingSending` by D1 writes still under way (they count toward the cap). */
  private sendingInFlight = 0;
  /** The running dispatch loop; dispatches never overlap, a request during one makes it run again. */
  private dispatching: Promise<void> | null = null;
  private dispatchAgain = false;
  /** Until when dispatch waits after a failed suppression check (dropSuppressed). */
  private suppressionRetryAt = 0;
  /** Frame pacing (takeBreath): when the current busy stretch began, and the pause frames wait on. */
  private busySince = 0;
  private lastFrameAt = 0;
  private pause: Promise<void> | null = null;
  /** Pauses taken since the object started (tests read it). */
  private breaths = 0;
  /**
   * False only once a flush found the `catalog` table empty, and true again from the next accept:
   * a flush while every message is catalogued (delivery, mostly) reads nothing for the catalog.
   * Conservative: it starts true, and the cron's flush() and the alarm look at the table itself.
   */
  private catalogWaiting = true;
  /** Events staged for the tenants' WebhookQueues until they take them (services/webhook-handoff.ts). */
  readonly handoff: WebhookHandoff;
  /** Tracking hits of this shard's messages, kept until D1 has them (services/tracking-events.ts). */
  readonly tracking: TrackingInbox;

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.db = createDb(env.DB);
    const loaded = loadConfig(env);
    if (!loaded.ok) throw new Error(`OriginHub misconfigured: ${loaded.problems.join("; ")}`);
    this.config = loaded.config;
    this.retry = createRetrySchedule(this.config.RETRY_SCHEDULE);
    this.handoff = new WebhookHandoff(this.sql, (tenantId) => env.WEBHOOK_QUEUE.getByName(tenantId));
    this.tracking = new TrackingInbox(
      this.sql,
      env.DB,
      (events) => this.handOffEvents(events),
      (at) => this.armAlarmBy(at),
    );
    // Pings are answered by the runtime without waking the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('{"type":"ping"}', '{"type":"pong"}'));
    void ctx.blockConcurrencyWhile(async () => {
      ctx.storage.transactionSync(() => this.createSchema());
      // Outcomes being written when the object last stopped were not acknowledged: origin results go
      // back to their lease (the origin re-sends them), outcomes the hub decided are decided again.
      this.sql.exec(
        "UPDATE outbox SET state = 'leased' WHERE state = 'recording' AND lease_until IS NOT NULL",
      );
      // A cancelled message goes back to `cancelled` (its durable mark), never to `ready`.
      this.sql.exec(`UPDATE outbox SET state = ${UNRECORDED_STATE_SQL} WHERE state = 'recording'`);
      this.queueCancelled();
      // Catalog rows a previous incarnation had not written yet: write them now.
      if (this.hasUncatalogued()) this.scheduleFlush(0);
    });
  }

  /**
   * The storage layout (header, "Storage"), created by the object itself; an object written by an
   * older version is brought to it in place, in the same transaction (`upgradeOutbox`).
   */
  private createSchema(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS outbox (
      message_id TEXT PRIMARY KEY,
      tenant_id TEXT NOT NULL,
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
      ip_pool TEXT
    )`);
    // The job payload, written once at accept, read at each dispatch, deleted with its outbox row.
    this.sql.exec(`CREATE TABLE IF NOT EXISTS outbox_entry (
      message_id TEXT PRIMARY KEY,
      entry TEXT NOT NULL
    )`);
    // Catalog rows of accepted messages not yet in D1 (JSON of CatalogRows, bodies left out).
    this.sql.exec(`CREATE TABLE IF NOT EXISTS catalog (
      message_id TEXT PRIMARY KEY,
      rows TEXT NOT NULL
    )`);
    this.upgradeOutbox();
    // Batches, their pauses and cancels, and cancel marks (services/batch-holds.ts).
    ensureBatchTables(this.sql);
    // Payloads of failed and bounced messages, for POST /v3/messages/{id}/retry (services/message-retry.ts).
    ensureRetryTable(this.sql);
    // SenderKit test-mode messages and their synthesized lifecycle (services/senderkit/test-lifecycle.ts).
    ensureSkTestTables(this.sql);
    // Events written to D1 and not yet taken by their WebhookQueue (services/webhook-handoff.ts).
    ensureHandoffTable(this.sql);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS idempotency (
      tenant_id TEXT NOT NULL,
      key TEXT NOT NULL,
      body_hash TEXT NOT NULL,
      message_ids TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      PRIMARY KEY (tenant_id, key)
    )`);
    this.sql.exec("CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency(created_at)");
    // Boot ids a node has replaced: a process that comes back with one of them lost its jobs already.
    this.sql.exec(`CREATE TABLE IF NOT EXISTS retired_boots (
      node_id TEXT NOT NULL,
      boot_id TEXT NOT NULL,
      retired_at INTEGER NOT NULL,
      PRIMARY KEY (node_id, boot_id)
    )`);
    // The outbox's indexes (header, "Storage"); test/edge/hub-storage.test.ts checks that the
    // queries of OUTBOX_SQL use them. outbox_lease_end and outbox_holder hold leased rows only, so a row
    // waiting to be dispatched costs them nothing; outbox_ready_age holds ready rows only.
    this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_ready ON outbox(state, due_at)");
    this.sql.exec(
      "CREATE INDEX IF NOT EXISTS outbox_lease_end ON outbox(lease_until) WHERE lease_until IS NOT NULL",
    );
    this.sql.exec(
      "CREATE INDEX IF NOT EXISTS outbox_holder ON outbox(lease_node, lease_boot) WHERE lease_node IS NOT NULL",
    );
    // (An outbox_enqueued over every row came first: the alarm's queue-age look-up then walked past
    // every leased row.)
    this.sql.exec("DROP INDEX IF EXISTS outbox_enqueued");
    this.sql.exec("CREATE INDEX IF NOT EXISTS outbox_ready_age ON outbox(enqueued_at) WHERE state = 'ready'");
  }

  /**
   * Brings an outbox written by an older version to the current layout, in place:
   *  - link protocol 1 counted dispatches as `attempt` and had no deferral count;
   *  - outboxes from before the hub accepted messages had no `catalogued` flag;
   *  - outboxes from before the job payload moved out kept it in the row (`entry`), had a
   *    `catalogued` flag (now: whether the message still has a `catalog` row), and had indexes every
   *    state change had to update;
   *  - outboxes from before the due query filtered IP pools kept the pool in the payload only.
   */
  private upgradeOutbox(): void {
    const columns = new Set(
      this.sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('outbox')")
        .toArray()
        .map((c) => c.name),
    );
    if (columns.has("attempt")) {
      this.sql.exec("ALTER TABLE outbox RENAME COLUMN attempt TO dispatches");
      this.sql.exec("ALTER TABLE outbox ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0");
      // The old count was used as the failure count; keep each message's place in the schedule.
      this.sql.exec("UPDATE outbox SET deferrals = dispatches");
    }
    if (!columns.has("ip_pool")) {
      // The IP pool, filtered in the due query, was read from the payload (services/ip-pools.ts).
      this.sql.exec("ALTER TABLE outbox ADD COLUMN ip_pool TEXT");
      const from = columns.has("entry")
        ? "outbox.entry"
        : "(SELECT e.entry FROM outbox_entry e WHERE e.message_id = outbox.message_id)";
      this.sql.exec(`UPDATE outbox SET ip_pool = json_extract(${from}, '$.ipPool') WHERE true`);
    }
    if (!columns.has("lease_node")) {
      this.sql.exec("ALTER TABLE outbox ADD COLUMN lease_node TEXT");
      this.sql.exec("ALTER TABLE outbox ADD COLUMN lease_boot TEXT");
    }
    if (columns.has("entry")) {
      this.sql.exec(
        `INSERT INTO outbox_entry (message_id, entry) SELECT message_id, entry FROM outbox WHERE true
         ON CONFLICT(message_id) DO NOTHING`,
      );
    }
    if (columns.has("catalogued")) {
      // A flush dropped a message's catalog copy in the same block that set catalogued = 1, so the
      // two agree; a copy left beside catalogued = 1 is in D1 already.
      this.sql.exec(
        "DELETE FROM catalog WHERE message_id IN (SELECT message_id FROM outbox WHERE catalogued = 1)",
      );
    }
    for (const index of [
      "outbox_catalogued",
      "outbox_lease",
      "outbox_node",
      "outbox_lease_until",
      "outbox_age",
    ]) {
      this.sql.exec(`DROP INDEX IF EXISTS ${index}`);
    }
    if (columns.has("entry")) this.sql.exec("ALTER TABLE outbox DROP COLUMN entry");
    if (columns.has("catalogued")) this.sql.exec("ALTER TABLE outbox DROP COLUMN catalogued");
  }

  // ---------------------------------------------------------------- RPC from the Worker

  /**
   * The point of acceptance: every message of one request, with its catalog rows (and the request's
   * Idempotency-Key), in one transaction. When this returns, the messages are durable here and will
   * reach D1 and an origin; the Worker answers 202.
   */
  async accept(req: AcceptRequest): Promise<AcceptResult> {
    const now = Date.now();
    let batched = false;
    const result = this.ctx.storage.transactionSync((): AcceptResult => {
      if (req.idempotency) {
        this.sql.exec("DELETE FROM idempotency WHERE created_at <= ?", now - IDEMPOTENCY_TTL_MS);
        const prior = this.sql
          .exec<{ body_hash: string; message_ids: string }>(
            "SELECT body_hash, message_ids FROM idempotency WHERE tenant_id = ? AND key = ?",
            req.tenantId,
            req.idempotency.key,
          )
          .toArray()[0];
        if (prior) {
          return prior.body_hash === req.idempotency.bodyHash
            ? { ok: true, messageIds: JSON.parse(prior.message_ids) as string[], replayed: true }
            : { ok: false, reason: "idempotency_conflict" };
        }
      }
      // After the replay check (a retry gets its ids even if the pool has gone since), before any write.
      const pool = unknownPool(
        this.sql,
        req.messages.map((m) => m.entry.ipPool),
        now,
      );
      if (pool !== null) return { ok: false, reason: "unknown_ip_pool", ipPool: pool };
      batched = req.messages.some((m) => m.entry.batchId !== undefined);
      for (const { entry, catalog } of req.messages) {
        // The tenant of every row is the request's: one credential, one tenant.
        if (entry.tenantId !== req.tenantId || catalog.message.tenantId !== req.tenantId) {
          throw new Error("accept: a message of another tenant in the request");
        }
        this.insertOutbox(entry, now);
        this.catalogWaiting = true;
        this.sql.exec(
          "INSERT INTO catalog (message_id, rows) VALUES (?, ?) ON CONFLICT(message_id) DO NOTHING",
          entry.messageId,
          JSON.stringify(catalog),
        );
      }
      const messageIds = req.messages.map((m) => m.entry.messageId);
      if (req.idempotency) {
        this.sql.exec(
          "INSERT INTO idempotency (tenant_id, key, body_hash, message_ids, created_at) VALUES (?, ?, ?, ?, ?)",
          req.tenantId,
          req.idempotency.key,
          req.idempotency.bodyHash,
          JSON.stringify(messageIds),
          now,
        );
      }
      return { ok: true, messageIds, replayed: false };
    });
    if (result.ok && !result.replayed && req.messages.length > 0) {
      // The alarm is the durable backstop for the catalog flush (a timer dies with the object);
      // it is armed before the answer, so the 202 never goes out without it.
      await this.armAlarmBy(now + FLUSH_RETRY_MS);
      this.scheduleFlush(this.config.CATALOG_FLUSH_MS);
      // Messages accepted into a cancelled batch were cancelled in the transaction; their outcome is written now.
      if (batched) this.queueCancelled();
      // Dispatch after the answer: the 202 does not wait for DKIM keys to open or frames to go out.
      // With no link that has credit a dispatch would find nothing to do but re-arm the alarm, which
      // the catalog flush does anyway (flushResults → scheduleAlarm), and the alarm armed above backs.
      if (this.links().some((l) => l.state.credits > 0)) void this.dispatch();
    }
    return result;
  }

  /**
   * A message's outbox row and its job payload (header, "Storage"); false when the id is in the
   * outbox already. Its catalog rows, when it has them, are the caller's.
   */
  private insertOutbox(entry: OutboxEntry, now: number): boolean {
    const added = this.sql
      .exec(
        `INSERT INTO outbox (message_id, tenant_id, recipients, state, due_at, enqueued_at, ip_pool)
         VALUES (?, ?, ?, 'ready', ?, ?, ?) ON CONFLICT(message_id) DO NOTHING RETURNING message_id`,
        entry.messageId,
        entry.tenantId,
        JSON.stringify(entry.recipients),
        Math.max(now, entry.notBefore),
        // Queue age (MAX_QUEUE_AGE_MS) counts from when the message is due, so a send_at 72 h ahead
        // is not expired on arrival.
        Math.max(now, entry.notBefore),
        entry.ipPool ?? null,
      )
      // Not rowsWritten: it counts index entries too.
      .toArray().length;
    if (added === 0) return false;
    this.sql.exec(
      "INSERT OR REPLACE INTO outbox_entry (message_id, entry) VALUES (?, ?)",
      entry.messageId,
      JSON.stringify(entry),
    );
    if (entry.batchId !== undefined) placeInBatch(this.sql, entry.messageId, entry.tenantId, entry.batchId);
    return true;
  }

  /**
   * Read-your-writes: the message as this shard holds it while its catalog rows are not in D1 yet
   * (null once they are: D1 answers then). Tenant-checked here as in every D1 query.
   */
  async message(tenantId: string, messageId: string): Promise<HubMessageView | null> {
    const row = this.sql
      .exec<{
        entry: string;
        state: string;
        dispatches: number;
        deferrals: number;
        rows: string;
        ended: string | null;
        reason: string | null;
      }>(
        // `ended`: the status a cancel or /fail gave it (services/batch-holds.ts), while it is written.
        `SELECT e.entry, o.state, o.dispatches, o.deferrals, c.rows, x.status AS ended, x.reason FROM outbox o
         JOIN catalog c ON c.message_id = o.message_id JOIN outbox_entry e ON e.message_id = o.message_id
         LEFT JOIN outbox_cancel x ON x.message_id = o.message_id
         WHERE o.message_id = ? AND o.tenant_id = ?`,
        messageId,
        tenantId,
      )
      .toArray()[0];
    if (!row) return null;
    const catalog = JSON.parse(row.rows) as CatalogRows;
    const m = catalogMessageRow(catalog, JSON.parse(row.entry) as OutboxEntry);
    return {
      message: {
        ...(m as Required<NewMessage>),
        // Handed to an origin: processing (D1 has the later stages the origin reported).
        status: row.ended ?? (row.state === "ready" || row.state === "held" ? "queued" : "processing"),
        dispatches: row.dispatches,
        deferrals: row.deferrals,
        nextAttemptAt: null,
        errorMessage: row.reason,
        deliveredAt: null,
      } as MessageRow,
      events: catalog.events.map((e) => ({ ...e, attempt: e.attempt ?? 0 }) as EventRow),
      senderkit: catalog.senderkit ?? null,
    };
  }

  /** The /t/* routes' hits on this shard's messages (docs/api/tracking.md#events): kept, then D1, then the webhooks. */
  async recordTracking(events: FlushedEvent[]): Promise<{ recorded: number }> {
    return this.tracking.record(events);
  }

  /** Writes what waits for D1 now; the cron calls it on every shard, so a hub that lost its timers catches up. */
  async flush(): Promise<{ uncatalogued: number }> {
    // Held rows are never due, so the alarm does not wake for them; the cron's flush expires them.
    this.expirePaused(Date.now());
    pruneKept(this.sql, Date.now());
    // A backstop looks at the table itself, whatever the flag says.
    this.catalogWaiting = true;
    await this.flushResults();
    await this.scheduleAlarm();
    return { uncatalogued: this.uncatalogued() };
  }

  /** Adds messages to the outbox. Idempotent per message id, so the sweeper may call it again. */
  async enqueue(entries: OutboxEntry[]): Promise<{ added: number }> {
    const now = Date.now();
    let added = 0;
    for (const e of entries) {
      // One transaction per message: its row and its payload exist together or not at all.
      if (this.ctx.storage.transactionSync(() => this.insertOutbox(e, now))) added++;
    }
    await this.dispatch();
    return { added };
  }

  /**
   * A batch's pause or cancel (`status`), or its removal (null), as /v3/user/scheduled_sends set it
   * (services/batch-holds.ts): recorded for messages accepted later, and applied to the rows no
   * origin holds now. A removed pause lets held rows go; cancelled ones stay cancelled.
   */
  async setBatchHold(
    tenantId: string,
    batchId: string,
    status: ScheduledSendStatus | null,
  ): Promise<{ held: number; cancelled: number; resumed: number }> {
    const r = this.ctx.storage.transactionSync(() => {
      recordHold(this.sql, tenantId, batchId, status);
      if (status === "pause")
        return { held: holdBatch(this.sql, tenantId, batchId, true), cancelled: 0, resumed: 0 };
      if (status === "cancel") {
        const idle = idleRowsOfBatch(this.sql, tenantId, batchId);
        return { held: 0, cancelled: markCancelled(this.sql, idle, CANCELLED_BY_BATCH).length, resumed: 0 };
      }
      return { held: 0, cancelled: 0, resumed: holdBatch(this.sql, tenantId, batchId, false) };
    });
    if (r.cancelled > 0) this.queueCancelled();
    if (r.resumed > 0) await this.dispatch();
    return r;
  }

  /**
   * POST /v3/messages/{id}/cancel. Runs in the object like dispatch does, so the two never
   * interleave: a row no origin holds (ready or held) and that no recipient has an outcome for is
   * cancelled, and can never be leased afterwards; a leased or already-delivering one is not.
   */
  async cancelMessage(tenantId: string, messageId: string): Promise<CancelOutcome> {
    const row = this.sql
      .exec<{ state: OutboxRow["state"]; outcomes: number; ended: string | null }>(
        `SELECT state, delivered + bounced + failed AS outcomes,
           (SELECT c.status FROM outbox_cancel c WHERE c.message_id = o.message_id) AS ended
         FROM outbox o WHERE message_id = ? AND tenant_id = ?`,
        messageId,
        tenantId,
      )
      .toArray()[0];
    if (!row) return { outcome: "absent" };
    if (row.ended !== null) {
      return row.ended === "cancelled"
        ? { outcome: "cancelled", already: true }
        : { outcome: "ended", status: row.ended };
    }
    if ((row.state !== "ready" && row.state !== "held") || row.outcomes > 0) return { outcome: "dispatched" };
    this.ctx.storage.transactionSync(() => markCancelled(this.sql, [messageId], CANCELLED_BY_REQUEST));
    this.queueCancelled();
    return { outcome: "cancelled" };
  }

  /**
   * POST /v3/messages/{id}/fail: a message waiting in the outbox (queued, scheduled, held, or waiting
   * for a retry) ends `failed` now, its remaining recipients with a `dropped` event. One an origin
   * holds is not (its lease ends within LINK_LEASE_MS; the origin's result decides it).
   */
  async failMessage(tenantId: string, messageId: string): Promise<FailOutcome> {
    const row = this.sql
      .exec<{ state: OutboxRow["state"]; ended: string | null }>(
        `SELECT state, (SELECT c.status FROM outbox_cancel c WHERE c.message_id = o.message_id) AS ended
         FROM outbox o WHERE message_id = ? AND tenant_id = ?`,
        messageId,
        tenantId,
      )
      .toArray()[0];
    if (!row) return { outcome: "absent" };
    if (row.ended !== null) {
      return row.ended === "failed" ? { outcome: "failed" } : { outcome: "ended", status: row.ended };
    }
    if (row.state !== "ready" && row.state !== "held") return { outcome: "dispatched" };
    this.ctx.storage.transactionSync(() => markCancelled(this.sql, [messageId], FAILED_BY_REQUEST, "failed"));
    this.queueCancelled();
    return { outcome: "failed" };
  }

  /**
   * POST /v3/messages/{id}/retry (services/message-retry.ts), serialized with dispatch and cancel in
   * this object: a message waiting for its next retry attempt is made due now; one that ended failed
   * or bounced (within its window) is put back in the outbox under its own id, with the recipients
   * not delivered, after the catalog says `queued` again. One an origin holds is not touched.
   */
  async retryMessage(tenantId: string, messageId: string): Promise<RetryOutcome> {
    const now = Date.now();
    const row = this.sql
      .exec<{
        state: OutboxRow["state"];
        deferrals: number;
        dispatches: number;
        ended: string | null;
        retried: number | null;
      }>(
        `SELECT state, deferrals, dispatches, (SELECT c.status FROM outbox_cancel c WHERE c.message_id = o.message_id) AS ended,
           (SELECT json_extract(e.entry, '$.freshFrom') FROM outbox_entry e WHERE e.message_id = o.message_id) AS retried
         FROM outbox o WHERE message_id = ? AND tenant_id = ?`,
        messageId,
        tenantId,
      )
      .toArray()[0];
    if (row) {
      if (row.ended !== null) return { outcome: "ended", status: row.ended };
      if (row.state === "ready" && row.deferrals > 0) {
        this.sql.exec(
          "UPDATE outbox SET due_at = ? WHERE message_id = ? AND state = 'ready'",
          now,
          messageId,
        );
        void this.dispatch();
        return { outcome: "requeued" };
      }
      // Re-queued by a retry already and not handed out since: the same answer again.
      if (row.state === "ready" && row.retried !== null && row.retried > row.dispatches) {
        return { outcome: "requeued" };
      }
      if (row.state === "ready" || row.state === "held") return { outcome: "waiting" };
      return { outcome: "dispatched" };
    }
    const kept = keptMessage(this.sql, tenantId, messageId, now);
    if (!kept) return { outcome: "absent" };
    // Another retry of it is between its catalog write and the outbox: that one re-queues it.
    if (kept.claimedAt !== null && kept.claimedAt > now - RETRY_CLAIM_MS) return { outcome: "requeued" };
    claimKept(this.sql, messageId, now);
    try {
      await this.env.DB.batch(retryCatalogStatements(this.env.DB, kept, now));
    } catch (err) {
      claimKept(this.sql, messageId, null);
      console.error(
        JSON.stringify({ level: "error", msg: "retry: catalog write failed", error: errorText(err) }),
      );
      return { outcome: "unavailable" };
    }
    this.ctx.storage.transactionSync(() => {
      const entry: OutboxEntry = {
        ...kept.entry,
        recipients: kept.recipients,
        notBefore: 0,
        freshFrom: kept.dispatches + 1,
      };
      if (this.insertOutbox(entry, Date.now())) {
        this.sql.exec("UPDATE outbox SET dispatches = ? WHERE message_id = ?", kept.dispatches, messageId);
      }
      dropKept(this.sql, messageId);
    });
    // A batch cancelled meanwhile cancels it again at once (insertOutbox → placeInBatch).
    this.queueCancelled();
    void this.dispatch();
    return { outcome: "requeued" };
  }

  /** An `ack`'s stages for jobs this origin process holds, queued for the next D1 batch (services/message-stages.ts). */
  private noteStages(
    stages: { rendered?: string[]; sending?: string[] },
    nodeId: string,
    bootId: string | null,
  ): void {
    const held = heldStages(this.sql, stages, nodeId, bootId);
    for (const [id, stage] of held) {
      if (this.pendingStages.size >= MAX_PENDING_STAGES && !this.pendingStages.has(id)) break;
      if (this.pendingStages.get(id) !== "sending") this.pendingStages.set(id, stage);
    }
    if (held.size > 0) this.scheduleFlush();
  }

  /** A paused batch's rows past the maximum queue age end failed (services/batch-holds.ts). */
  private expirePaused(now: number): void {
    const n = this.ctx.storage.transactionSync(() =>
      expireHeld(this.sql, now - this.config.MAX_QUEUE_AGE_MS),
    );
    if (n > 0) this.queueCancelled();
  }

  /** Rows of a paused or cancelled batch met at dispatch: held, or cancelled (their outcome queued). */
  private applyHolds(held: Map<string, ScheduledSendStatus>): void {
    const pause = [...held].filter(([, s]) => s === "pause").map(([id]) => id);
    const cancel = [...held].filter(([, s]) => s === "cancel").map(([id]) => id);
    this.ctx.storage.transactionSync(() => {
      if (pause.length > 0) {
        this.sql.exec(
          "UPDATE outbox SET state = 'held' WHERE message_id IN (SELECT value FROM json_each(?)) AND state = 'ready'",
          JSON.stringify(pause),
        );
      }
      markCancelled(this.sql, cancel, CANCELLED_BY_BATCH);
    });
    if (cancel.length > 0) this.queueCancelled();
  }

  /**
   * Rows in state `cancelled` → their outcome (status `cancelled`, services/batch-holds.ts) queued
   * for the next D1 batch, like an outcome the hub decided itself. A few hundred at a time; the
   * alarm takes the rest.
   */
  private queueCancelled(): void {
    const limit = 500;
    const marks = new Map(cancelledRows(this.sql, limit).map((r) => [r.message_id, r]));
    if (marks.size === 0) return;
    const now = Date.now();
    const rows = this.sql
      .exec<AttemptRow & { recipients: string }>(
        `SELECT message_id, tenant_id, dispatches, deferrals, state, delivered, bounced, failed, enqueued_at,
           recipients FROM outbox WHERE message_id IN (SELECT value FROM json_each(?))`,
        JSON.stringify([...marks.keys()]),
      )
      .toArray();
    this.queueOutcomes(
      rows.map(({ recipients, ...row }) => ({
        ws: null,
        jobId: null,
        row,
        plan: cancelPlan(
          row,
          JSON.parse(recipients) as string[],
          marks.get(row.message_id)!.reason,
          now,
          marks.get(row.message_id)!.status,
        ),
        duplicates: [],
      })),
    );
    this.scheduleFlush();
    if (marks.size === limit) void this.armAlarmBy(now + FLUSH_RETRY_MS);
  }

  // ------------------------------------------ SenderKit test mode (services/senderkit/test-lifecycle.ts)

  /** A test-mode /v1 send: accepted here in one transaction, its lifecycle then driven by the alarm. */
  async skAcceptTest(req: SkTestAccept): Promise<SkTestAcceptResult> {
    const r = this.ctx.storage.transactionSync(() => skAcceptTest(this.sql, req, Date.now()));
    if (r.ok && !r.replayed) await this.armAlarmBy(Date.now());
    return r;
  }

  /** DELETE /v1/messages/{id} of a test message, serialized with its lifecycle steps. */
  async skCancelTest(tenantId: string, messageId: string): Promise<SkCancelOutcome> {
    const r = this.ctx.storage.transactionSync(() => skCancelTest(this.sql, tenantId, messageId, Date.now()));
    if (r.outcome === "canceled") await this.armAlarmBy(Date.now());
    return r;
  }

  /** Read-your-writes of a test message. */
  async skTestMessage(tenantId: string, messageId: string): Promise<SkMessageRow | null> {
    return skTestView(this.sql, tenantId, messageId);
  }

  private async skTick(): Promise<void> {
    const wake = await skTestTick(this.ctx.storage, this.env.DB, Date.now);
    if (wake !== null) await this.armAlarmBy(Math.max(wake, Date.now() + MIN_ALARM_GAP_MS));
  }

  async stats(): Promise<HubStats> {
    const count = (state: string) =>
      (this.sql.exec("SELECT count(*) AS n FROM outbox WHERE state = ?", state).one().n as number) ?? 0;
    return {
      ready: count("ready"),
      leased: count("leased") + count("recording"),
      links: this.links().map(({ state }) => ({
        linkId: state.linkId,
        nodeId: state.nodeId,
        bootId: state.bootId ?? null,
        credits: state.credits,
        framesIn: state.framesIn ?? 0,
        jobsOut: state.jobsOut ?? 0,
      })),
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
    server.serializeAttachment({
      linkId,
      nodeId: null,
      bootId: null,
      credits: 0,
      framesIn: 0,
      jobsOut: 0,
    } satisfies LinkState);
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, raw: string | ArrayBuffer): Promise<void> {
    await this.takeBreath();
    try {
      await this.handleFrame(ws, raw);
    } finally {
      const after = ws.deserializeAttachment() as LinkState | null;
      if (after)
        ws.serializeAttachment({ ...after, framesIn: (after.framesIn ?? 0) + 1 } satisfies LinkState);
    }
  }

  private async handleFrame(ws: WebSocket, raw: string | ArrayBuffer): Promise<void> {
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
        // The key origins sign tracking links with, derived from TRACKING_SECRET (docs/link-protocol.md#tracking);
        // awaited before any state changes, so no frame of this link is handled between them and the welcome.
        const tracking = await trackingWelcome(this.config);
        if (this.isRetired(frame.nodeId, frame.bootId)) {
          // Its jobs went to its successor: two processes under one NODE_ID must not take turns.
          this.send(ws, {
            type: "error",
            code: "boot_superseded",
            message: `node ${frame.nodeId} has restarted since boot ${frame.bootId}; NODE_ID must be unique per process`,
          });
          ws.close(1008, "boot superseded");
          return;
        }
        this.forgetPreviousIncarnation(ws, frame.nodeId, frame.bootId);
        // Kept in storage: a send naming one of these is accepted even before any origin reconnects.
        recordAnnouncedPools(this.sql, frame.nodeId, frame.pools, Date.now());
        ws.serializeAttachment({
          ...state,
          nodeId: frame.nodeId,
          bootId: frame.bootId,
          credits: frame.capacity,
        } satisfies LinkState);
        const hubs = allShards(layoutOf(this.config)).map(hubName);
        this.send(ws, {
          type: "welcome",
          protocol: LINK_PROTOCOL_VERSION,
          shard: this.linkIndex(hubs),
          shards: hubs.length,
          leaseMs: this.config.LINK_LEASE_MS,
          hubs,
          tracking,
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
        // First ack and every renewal alike: the lease runs L from now, and follows the origin process
        // (not the link), so a job acknowledged before a reconnect is renewed over the new link. Also
        // while its result is being written (`recording`): if that write fails the row is leased again,
        // and a renewal lost here would let a D1 outage longer than L hand the job out a second time.
        if (state.nodeId === null) return;
        // One statement for the whole frame.
        this.sql.exec(
          OUTBOX_SQL.renew,
          Date.now() + this.config.LINK_LEASE_MS,
          state.linkId,
          JSON.stringify(
            frame.jobIds.map(splitJobId).map(({ messageId, dispatch }) => [messageId, dispatch]),
          ),
          state.nodeId,
          state.bootId,
        );
        // No alarm to re-arm: an ack only moves leases later, and the alarm set when they were leased
        // fires no later than they end (it re-arms itself when it finds nothing to expire).
        if (frame.stages) this.noteStages(frame.stages, state.nodeId, state.bootId);
        return;
      }
      case "release": {
        // The origin is full: these go to whoever has room, and this link gets no more until it grants.
        if (state.nodeId === null) return;
        for (const jobId of frame.jobIds) {
          const { messageId, dispatch } = splitJobId(jobId);
          this.sql.exec(
            `UPDATE outbox SET state = 'ready', lease_link = NULL, lease_node = NULL, lease_boot = NULL,
               lease_until = NULL, acked = 0
             WHERE message_id = ? AND dispatches = ? AND state = 'leased' AND lease_node = ? AND lease_boot = ?`,
            messageId,
            dispatch,
            state.nodeId,
            state.bootId,
          );
        }
        ws.serializeAttachment({ ...state, credits: 0 } satisfies LinkState);
        await this.dispatch();
        return;
      }
      case "result": {
        const { type: _type, ...result } = frame;
        this.applyResults(ws, [result]);
        return;
      }
      case "results":
        this.applyResults(ws, frame.results);
        return;
      case "inbound":
        if (state.nodeId !== null) await this.recordInbound(ws, frame);
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
    this.sql.exec(OUTBOX_SQL.expireLeases, now);
    const uncatalogued = this.hasUncatalogued();
    if (uncatalogued) this.catalogWaiting = true;
    if (this.pendingSending.length > 0 || this.pendingResults.length > 0 || uncatalogued) {
      await this.flushResults();
    }
    await this.expireOldMessages(now);
    // SenderKit test-mode steps due now, and their D1 writes (services/senderkit/test-lifecycle.ts).
    await this.skTick();
    this.expirePaused(now);
    this.queueCancelled();
    await this.dispatch();
    // Tracking hits a stopped incarnation kept, or whose D1 write failed, before their hand-off.
    await this.tracking.flush();
    await this.drainHandoff();
  }

  // ---------------------------------------------------------------- internals

  /**
   * After BUSY_SLICE_MS of frames back to back, frames wait BREATH_MS (on one shared promise, so they
   * are handled in arrival order). workerd polls its sockets only when its event loop runs out of
   * work; a hub that always has a frame to handle kept every new connection to the process (the
   * Worker's requests, /healthz) waiting until its backlog was out (docs/operations.md, "Running the
   * stack locally"). The pause lets the loop go idle once the frames already read are parked.
   */
  private async takeBreath(): Promise<void> {
    const now = Date.now();
    if (this.pause) return this.pause;
    if (now - this.lastFrameAt > BREATH_MS) this.busySince = now;
    this.lastFrameAt = now;
    if (now - this.busySince < BUSY_SLICE_MS) return;
    this.breaths++;
    this.pause = new Promise<void>((resolve) =>
      setTimeout(() => {
        this.pause = null;
        this.busySince = this.lastFrameAt = Date.now();
        resolve();
      }, BREATH_MS),
    );
    return this.pause;
  }

  private links(): { ws: WebSocket; state: LinkState }[] {
    return this.ctx
      .getWebSockets()
      .map((ws) => ({ ws, state: ws.deserializeAttachment() as LinkState | null }))
      .filter((l): l is { ws: WebSocket; state: LinkState } => l.state !== null && l.state.nodeId !== null);
  }

  /** This shard's place in the link order; a shard the layout does not list (a config change) by its own name. */
  private linkIndex(hubs: string[]): number {
    const name = this.ctx.id.name ?? "hub-0";
    const at = hubs.indexOf(name);
    if (at >= 0) return at;
    const own = parseHubName(name);
    return own && own.region === null ? own.index : 0;
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

  /**
   * A hello from `nodeId` with a boot id other than the one its jobs are leased to: that process
   * restarted, so what it held (acknowledged or not) is lost with it and goes back to `ready` now,
   * instead of after LINK_LEASE_MS. Its links that have not closed yet are closed and get no more work.
   */
  private forgetPreviousIncarnation(current: WebSocket, nodeId: string, bootId: string): void {
    const previous = new Set(
      this.sql
        .exec<{ b: string }>(
          "SELECT DISTINCT lease_boot AS b FROM outbox WHERE lease_node = ? AND lease_boot IS NOT NULL AND lease_boot <> ?",
          nodeId,
          bootId,
        )
        .toArray()
        .map((r) => r.b),
    );
    for (const { ws, state } of this.links()) {
      if (ws === current || state.nodeId !== nodeId || state.bootId === bootId) continue;
      if (state.bootId) previous.add(state.bootId);
      ws.serializeAttachment({ ...state, nodeId: null, bootId: null, credits: 0 } satisfies LinkState);
      try {
        ws.close(1012, "origin restarted");
      } catch {
        // already closed
      }
    }
    const now = Date.now();
    for (const b of previous) {
      this.sql.exec(
        "INSERT OR REPLACE INTO retired_boots (node_id, boot_id, retired_at) VALUES (?, ?, ?)",
        nodeId,
        b,
        now,
      );
    }
    // A week is far longer than any process stays disconnected and still holds work.
    this.sql.exec("DELETE FROM retired_boots WHERE retired_at < ?", now - 7 * 86_400_000);
    const back = this.sql
      .exec(
        `UPDATE outbox SET state = 'ready', lease_link = NULL, lease_node = NULL, lease_boot = NULL,
         lease_until = NULL, acked = 0
       WHERE lease_node = ? AND lease_boot IS NOT ? AND +state = 'leased' RETURNING message_id`,
        nodeId,
        bootId,
      )
      .toArray().length;
    if (back > 0) {
      console.log(
        JSON.stringify({
          level: "info",
          msg: "origin restarted; re-dispatching what it held",
          nodeId,
          jobs: back,
        }),
      );
    }
  }

  private isRetired(nodeId: string, bootId: string): boolean {
    return (
      this.sql.exec("SELECT 1 FROM retired_boots WHERE node_id = ? AND boot_id = ?", nodeId, bootId).toArray()
        .length > 0
    );
  }

  private async releaseLink(ws: WebSocket): Promise<void> {
    const state = ws.deserializeAttachment() as LinkState | null;
    if (!state) return;
    ws.serializeAttachment({ ...state, nodeId: null, credits: 0 } satisfies LinkState);
    // Jobs the origin never acknowledged go straight back to the outbox. Acknowledged ones stay leased:
    // the node holds them and renews them over its next link; the lease timer covers a node that died.
    // (A link without a node id holds nothing: it never said hello, or its process was superseded
    // and `forgetPreviousIncarnation` took its rows back already.)
    if (state.nodeId !== null) {
      this.sql.exec(
        `UPDATE outbox SET state = 'ready', lease_link = NULL, lease_node = NULL, lease_boot = NULL,
           lease_until = NULL
         WHERE lease_node = ? AND lease_boot = ? AND +state = 'leased' AND lease_link = ? AND acked = 0`,
        state.nodeId,
        state.bootId,
        state.linkId,
      );
    }
    await this.dispatch();
  }

  /** Hands due jobs to links that have credit, then re-arms the alarm. Never runs twice at once. */
  private dispatch(): Promise<void> {
    if (this.dispatching) {
      this.dispatchAgain = true;
      return this.dispatching;
    }
    this.dispatching = (async () => {
      try {
        do {
          this.dispatchAgain = false;
          await this.dispatchOnce();
        } while (this.dispatchAgain);
      } finally {
        this.dispatching = null;
      }
    })();
    return this.dispatching;
  }

  private async dispatchOnce(): Promise<void> {
    // Back-pressure while D1 is failing: the rows stay `ready` in storage instead of piling up marks here.
    if (this.sendingMarksWaiting() < MAX_PENDING_SENDING) {
      const sockets = this.links()
        .sort((a, b) => b.state.credits - a.state.credits)
        .map((l) => l.ws);
      for (const ws of sockets) {
        const state = ws.deserializeAttachment() as LinkState | null;
        if (!state || state.nodeId === null || state.credits <= 0) continue;
        // LEFT JOIN (OUTBOX_SQL.due): a row whose payload is missing fails visibly (toJob), rather
        // than waiting forever. Rows of an IP pool this link's node did not announce are left, in
        // the query, for one that did (services/ip-pools.ts).
        const rows = this.sql
          .exec<DispatchRow>(
            OUTBOX_SQL.due,
            Date.now(),
            state.credits,
            JSON.stringify([...poolsOfNode(this.sql, state.nodeId)]),
          )
          .toArray();
        if (rows.length === 0) continue;
        // A paused or cancelled batch is checked here too, whatever put its row back to `ready`.
        const held = heldAmong(this.sql, rows);
        if (held.size > 0) {
          this.applyHolds(held);
          this.dispatchAgain = true;
        }
        const free = held.size > 0 ? rows.filter((r) => !held.has(r.message_id)) : rows;
        if (free.length === 0) continue;
        // Suppressed recipients are dropped here, off the accept path; null: D1 did not answer, nothing goes.
        const unsuppressed = await this.dropSuppressed(free);
        if (unsuppressed === null) break;
        if (unsuppressed.length === 0) continue;
        await this.dispatchTo(ws, unsuppressed);
      }
    }
    await this.scheduleAlarm();
  }

  /**
   * The check before dispatch (services/suppression-check.ts): one D1 lookup for the rows' recipients.
   * A message with a suppressed recipient gets its drop recorded like an outcome (recipients left
   * are queued again, due now); the rest are returned to be dispatched. When D1 fails nothing is
   * dropped or sent: the rows stay ready and the check is tried again in SUPPRESSION_RETRY_MS.
   */
  private async dropSuppressed(rows: DispatchRow[]): Promise<DispatchRow[] | null> {
    if (Date.now() < this.suppressionRetryAt) {
      await this.armAlarmBy(this.suppressionRetryAt);
      return null;
    }
    let drops: Map<string, DropDecision>;
    try {
      drops = (await suppressionDrops(this.env.DB, rows)).drops;
    } catch (err) {
      this.suppressionRetryAt = Date.now() + SUPPRESSION_RETRY_MS;
      console.error(
        JSON.stringify({ level: "error", msg: "suppression check failed", error: errorText(err) }),
      );
      await this.armAlarmBy(this.suppressionRetryAt);
      return null;
    }
    if (drops.size === 0) return rows;
    // The lookup awaited: only rows still ready at the same dispatch are decided now.
    const now = Date.now();
    const current = new Map(
      this.sql
        .exec<{ message_id: string; state: string; dispatches: number }>(
          "SELECT message_id, state, dispatches FROM outbox WHERE message_id IN (SELECT value FROM json_each(?))",
          JSON.stringify([...drops.keys()]),
        )
        .toArray()
        .map((r) => [r.message_id, r]),
    );
    const results: PendingResult[] = [];
    for (const row of rows) {
      const d = drops.get(row.message_id);
      const cur = current.get(row.message_id);
      if (!d || cur?.state !== "ready" || cur.dispatches !== row.dispatches) continue;
      results.push({ ws: null, jobId: null, row, plan: dropPlan(row, d, now), duplicates: [] });
    }
    if (results.length > 0) {
      this.queueOutcomes(results);
      this.scheduleFlush();
      this.dispatchAgain = true;
    }
    return rows.filter((r) => !drops.has(r.message_id));
  }

  /** Builds every row into a job first, then leases and sends the ones that could be built. */
  private async dispatchTo(ws: WebSocket, rows: DispatchRow[]): Promise<void> {
    const built: BuiltJob[] = [];
    // A row that fails to build leaves this link's credit unspent: look for more work in the next pass.
    let failed = 0;
    for (const row of rows) {
      const dispatch = row.dispatches + 1;
      try {
        const job = await this.toJob(row, dispatch);
        const json = JSON.stringify(job);
        const bytes = utf8ByteLength(json);
        if (bytes > MAX_JOB_BYTES) {
          this.failUnsendable(
            row,
            `Message too large for the delivery link: the job is ${bytes} bytes of UTF-8, at most ${MAX_JOB_BYTES} fit in one frame`,
          );
          failed++;
          continue;
        }
        built.push({ row, dispatch, json, bytes, ...(isChannelJob(job) ? { channel: true } : {}) });
      } catch (err) {
        this.failUnsendable(row, `Could not prepare the message for delivery: ${errorText(err)}`);
        failed++;
      }
    }
    if (failed > 0) this.dispatchAgain = true;
    // Building awaited: read the link again, it may have closed or been superseded meanwhile.
    const state = ws.deserializeAttachment() as LinkState | null;
    if (!state || state.nodeId === null || built.length === 0) return;
    const now = Date.now();
    const leaseUntil = now + this.config.LINK_LEASE_MS;
    const leased: BuiltJob[] = [];
    const candidates = built.slice(0, Math.max(0, state.credits));
    // One statement for the whole batch; RETURNING names the rows that were still ready at that dispatch
    // (not rowsWritten: it counts index entries too).
    const took = new Set(
      this.sql
        .exec<{ message_id: string }>(
          OUTBOX_SQL.lease,
          state.linkId,
          state.nodeId,
          state.bootId,
          leaseUntil,
          JSON.stringify(candidates.map((j) => [j.row.message_id, j.dispatch])),
        )
        .toArray()
        .map((r) => r.message_id),
    );
    for (const job of candidates) if (took.has(job.row.message_id)) leased.push(job);
    if (leased.length === 0) return;
    ws.serializeAttachment({
      ...state,
      credits: state.credits - leased.length,
      jobsOut: (state.jobsOut ?? 0) + leased.length,
    } satisfies LinkState);
    const unsent = this.sendJobs(ws, leased);
    const sent = leased.filter((j) => !unsent.includes(j));
    for (const job of sent) this.pendingSending.push(job.row.message_id);
    if (unsent.length > 0) this.returnUnsent(ws, unsent);
    if (sent.length > 0) this.scheduleFlush();
  }

  /**
   * Sends jobs in frames of at most FRAME_BUDGET_BYTES (UTF-8); each job is serialized once, straight
   * into its frame. Returns the jobs whose frame could not be sent (the socket is gone or closing).
   */
  private sendJobs(ws: WebSocket, jobs: BuiltJob[]): BuiltJob[] {
    const unsent: BuiltJob[] = [];
    let frame: BuiltJob[] = [];
    let size = FRAME_OVERHEAD;
    const flush = () => {
      if (frame.length === 0) return;
      const email = frame.filter((j) => !j.channel).map((j) => j.json);
      const channel = frame.filter((j) => j.channel).map((j) => j.json);
      const text =
        channel.length === 0
          ? `${FRAME_PREFIX}${email.join(",")}${FRAME_SUFFIX}`
          : `${FRAME_PREFIX}${email.join(",")}${FRAME_CHANNEL}${channel.join(",")}${FRAME_SUFFIX}`;
      if (unsent.length > 0 || !this.sendRaw(ws, text)) unsent.push(...frame);
      frame = [];
      size = FRAME_OVERHEAD;
    };
    for (const job of jobs) {
      const added = job.bytes + (frame.length > 0 ? 1 : 0);
      if (frame.length > 0 && size + added > FRAME_BUDGET_BYTES) flush();
      size += job.bytes + (frame.length > 0 ? 1 : 0);
      frame.push(job);
    }
    flush();
    return unsent;
  }

  /** A frame that did not go out: its jobs are ready again at once, and the link gets its credits back. */
  private returnUnsent(ws: WebSocket, jobs: BuiltJob[]): void {
    for (const job of jobs) {
      this.sql.exec(
        `UPDATE outbox SET state = 'ready', lease_link = NULL, lease_node = NULL, lease_boot = NULL,
           lease_until = NULL, acked = 0, dispatches = ?
         WHERE message_id = ? AND state = 'leased' AND dispatches = ?`,
        job.row.dispatches,
        job.row.message_id,
        job.dispatch,
      );
    }
    const state = ws.deserializeAttachment() as LinkState | null;
    if (state) {
      ws.serializeAttachment({
        ...state,
        credits: state.credits + jobs.length,
        jobsOut: Math.max(0, (state.jobsOut ?? 0) - jobs.length),
      } satisfies LinkState);
    }
    console.error(
      JSON.stringify({
        level: "warn",
        msg: "jobs frame could not be sent; jobs back in the outbox",
        count: jobs.length,
      }),
    );
  }

  /**
   * A row that can never become a job fails its message the way an origin's "failed" outcome would:
   * through the next D1 batch, with the reason as error_message and a `dropped` event per recipient.
   */
  private failUnsendable(row: OutboxRow, reason: string): void {
    const recipients = JSON.parse(row.recipients) as string[];
    const outcomes: RecipientOutcome[] = recipients.map((recipient) => ({
      recipient,
      status: "failed",
      response: reason,
    }));
    this.queueOutcome({
      ws: null,
      jobId: null,
      row,
      plan: planResult(row, outcomes, this.retry, Date.now()),
      duplicates: [],
    });
    console.error(
      JSON.stringify({
        level: "error",
        msg: "message cannot be dispatched",
        messageId: row.message_id,
        reason,
      }),
    );
    this.scheduleFlush();
  }

  private async toJob(row: DispatchRow, dispatch: number): Promise<DeliveryJob | ChannelJob> {
    if (row.entry === null) throw new Error("its job payload is missing from the hub's storage");
    const entry = JSON.parse(row.entry) as OutboxEntry;
    if (entry.channel) {
      return channelJobOf(secretsKeyring(this.config), row, entry.channel, dispatch, entry.freshFrom);
    }
    let dkim: DeliveryJob["dkim"] = null;
    let dkimAdditional: DeliveryJob["dkimAdditional"];
    if (entry.dkim) {
      const d = entry.dkim;
      dkim = { domain: d.domain, selector: d.selector, privateKeyPem: await this.openKey(d, "rsa") };
      // Dual signing: a second key that does not open fails this message like the first would
      // (the caller turns the throw into a failed message), never the batch.
      if (d.ed25519) {
        const privateKeyPem = await this.openKey(
          { ...d, privateKeySealed: d.ed25519.privateKeySealed },
          "ed25519",
        );
        dkimAdditional = [{ domain: d.domain, selector: d.ed25519.selector, privateKeyPem }];
      }
    }
    return {
      jobId: jobIdFor(row.message_id, dispatch),
      messageId: row.message_id,
      tenantId: row.tenant_id,
      attempt: dispatch,
      recipients: JSON.parse(row.recipients) as string[],
      message: entry.message,
      dkim,
      ...(dkimAdditional ? { dkimAdditional } : {}),
      ...(entry.ipPool !== undefined ? { ipPool: entry.ipPool } : {}),
      ...(entry.freshFrom !== undefined ? { freshFrom: entry.freshFrom } : {}),
    };
  }

  /** Opens one sealed key of an outbox entry, through the isolate's cache of opened keys. */
  private async openKey(dkim: NonNullable<OutboxEntry["dkim"]>, kind: DkimKeyKind): Promise<string> {
    // The owner and the kind are part of the cache key: a sealed value copied onto another domain
    // (or into the other key's column) must still fail the owner check, not be served from the cache.
    const cacheKey = `${kind}\u0000${dkim.domainId ?? ""}\u0000${dkim.privateKeySealed}`;
    let pem = this.keyCache.get(cacheKey);
    if (!pem) {
      try {
        pem = await openDkimPrivateKey(this.config, dkim, kind);
      } catch (err) {
        const which = kind === "rsa" ? "DKIM private key" : "Ed25519 DKIM private key";
        throw new Error(
          `the ${which} of ${dkim.domain} could not be opened (${errorText(err)}); ` +
            "if SECRETS_KEY was changed, see the key rotation steps in docs/operations.md",
        );
      }
      if (this.keyCache.size > 500) this.keyCache.clear();
      this.keyCache.set(cacheKey, pem);
    }
    return pem;
  }

  /**
   * Validates results (one `result` frame, or the many of a `results` frame) and queues them for the
   * next D1 write. Results arriving within RESULT_FLUSH_MS are recorded in one D1 batch, so a busy hub
   * costs one round trip per batch, not per message; the rows of one frame are read in one query and
   * marked `recording` in one statement.
   */
  private applyResults(ws: WebSocket, frames: LinkResult[]): void {
    const rows = new Map(
      this.sql
        // Not the entries: a result needs only the attempt bookkeeping, and entries are kilobytes.
        .exec<AttemptRow>(OUTBOX_SQL.attempts, JSON.stringify([...new Set(frames.map((f) => f.messageId))]))
        .toArray()
        .map((r) => [r.message_id, r]),
    );
    const nothingToApply: string[] = [];
    const queued: PendingResult[] = [];
    for (const frame of frames) {
      const row = rows.get(frame.messageId);
      const pending = this.recording.get(frame.messageId);
      if (pending && pending.row.dispatches === frame.attempt) {
        // A re-sent copy of a result whose write is queued or under way: acknowledge it once that write succeeds.
        pending.duplicates.push({ ws, jobId: frame.jobId });
        continue;
      }
      if (!row || row.dispatches !== frame.attempt || row.state !== "leased") {
        // Already recorded, superseded by a later dispatch, or unknown: nothing to apply, stop the resends.
        nothingToApply.push(frame.jobId);
        continue;
      }
      const p: PendingResult = {
        ws,
        jobId: frame.jobId,
        row,
        // An origin's retryAfterMs is honoured, up to the maximum queue age (services/result-plan.ts).
        plan: planResult(row, frame.recipients, this.retry, Date.now(), {
          notAfter: row.enqueued_at + this.config.MAX_QUEUE_AGE_MS,
        }),
        duplicates: [],
      };
      // Before the next frame of the list: a second copy of it in the same frame is a duplicate.
      this.recording.set(row.message_id, p);
      queued.push(p);
    }
    if (nothingToApply.length > 0) this.send(ws, { type: "resultAck", jobIds: nothingToApply });
    if (queued.length > 0) {
      this.queueOutcomes(queued);
      this.scheduleFlush();
    }
  }

  /** `recording` keeps a re-sent copy of a result from being queued twice while its write is pending. */
  private queueOutcome(p: PendingResult): void {
    this.queueOutcomes([p]);
  }

  private queueOutcomes(list: PendingResult[]): void {
    this.sql.exec(OUTBOX_SQL.recording, JSON.stringify(list.map((p) => p.row.message_id)));
    for (const p of list) {
      this.pendingResults.push(p);
      this.recording.set(p.row.message_id, p);
    }
  }

  /** `sending` marks not yet in D1: waiting for the next flush, or in a write under way. */
  private sendingMarksWaiting(): number {
    return this.pendingSending.length + this.sendingInFlight;
  }

  /** Accepted messages whose catalog rows are not in D1 yet. */
  private hasUncatalogued(): boolean {
    return this.sql.exec("SELECT 1 FROM catalog LIMIT 1").toArray().length > 0;
  }

  private uncatalogued(): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM catalog").one().n;
  }

  private isCatalogued(messageId: string): boolean {
    // A message has a catalog row until D1 took its catalog rows; one that left the outbox had its
    // final outcome written, so its catalog rows before it.
    return this.sql.exec("SELECT 1 FROM catalog WHERE message_id = ?", messageId).toArray().length === 0;
  }

  /**
   * Stages events D1 has taken for the tenants' WebhookQueues (synchronous: in the caller's block),
   * then hands them off without holding the caller. The alarm is armed by the lease end first, the
   * backstop if this object stops before a queue answers.
   */
  private handOffEvents(events: Parameters<WebhookHandoff["stage"]>[0]): void {
    if (events.length === 0 || this.handoff.stage(events) === 0) return;
    void this.armAlarmBy(Date.now() + HANDOFF_LEASE_MS).then(() => this.drainHandoff());
  }

  /** Hands off every due staged row, then arms the alarm for the next one (a retry after a refusal). */
  private async drainHandoff(): Promise<void> {
    await this.handoff.drain();
    const next = this.sql.exec<{ t: number | null }>(HANDOFF_SQL.next).one().t;
    if (next !== null) await this.armAlarmBy(Math.max(next, Date.now() + MIN_ALARM_GAP_MS));
  }

  /** Sets the alarm to `at` unless it fires sooner already. */
  private async armAlarmBy(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /** `delayMs`: how long this kind of write may wait to share a batch (results 5 ms, catalog CATALOG_FLUSH_MS). */
  private scheduleFlush(delayMs: number = RESULT_FLUSH_MS, retry = false): void {
    // A retry after a failed write always waits: a full batch must not make a failing D1 spin.
    if (!retry && this.pendingResults.length + this.pendingSending.length >= RESULT_BATCH_MAX) {
      void this.flushResults();
      return;
    }
    const at = Date.now() + delayMs;
    if (this.flushTimer && this.flushAt <= at) return;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushAt = at;
    this.flushTimer = setTimeout(() => void this.flushResults(), delayMs);
  }

  /** Catalog rows for the next batch, oldest first, within CATALOG_BATCH_MAX and about CATALOG_BATCH_BYTES. */
  /**
   * `complete`: the batch holds every catalog row still waiting, so every other message is catalogued
   * (and flushResults need not ask the table message by message).
   * Messages whose outcome waits for its catalog rows go first (by primary key), then the oldest: a
   * delivery's events reach D1 and the webhooks with the next batch, not after a backlog of accepted
   * messages ahead of it (docs/api/webhooks.md#latency).
   */
  private catalogBatch(): {
    rows: { messageId: string; catalog: CatalogRows; text: string | null; html: string | null }[];
    complete: boolean;
  } {
    const out: { messageId: string; catalog: CatalogRows; text: string | null; html: string | null }[] = [];
    // Every accepted message is catalogued: nothing to read (the flag's doc comment).
    if (!this.catalogWaiting) return { rows: out, complete: true };
    let bytes = 0;
    type Row = {
      message_id: string;
      rows: string;
      text: string | null;
      html: string | null;
      size: number | null;
    };
    // LEFT JOIN: a message whose payload went missing still gets its catalog rows (without bodies).
    // Only the bodies are read out of the payload (catalogMessageRow's columns), not the whole job.
    const columns = `c.message_id, c.rows, json_extract(e.entry, '$.message.text') AS text,
           json_extract(e.entry, '$.message.html') AS html, length(e.entry) AS size
         FROM catalog c LEFT JOIN outbox_entry e ON e.message_id = c.message_id`;
    const waiting = JSON.stringify(
      [...new Set(this.pendingResults.map((p) => p.row.message_id))].slice(0, CATALOG_BATCH_MAX),
    );
    const first = this.sql
      .exec<Row>(`SELECT ${columns} WHERE c.message_id IN (SELECT value FROM json_each(?))`, waiting)
      .toArray();
    const room = CATALOG_BATCH_MAX - first.length;
    // Catalog rows are inserted in accept order, so rowid order is oldest first.
    const rest =
      room > 0
        ? this.sql
            .exec<Row>(
              `SELECT ${columns} WHERE c.message_id NOT IN (SELECT value FROM json_each(?)) ORDER BY c.rowid LIMIT ?`,
              waiting,
              room,
            )
            .toArray()
        : [];
    const rows = [...first, ...rest];
    // Read in the same synchronous block as any accept sets it: an accept after this sets it again.
    if (rows.length === 0) this.catalogWaiting = false;
    for (const r of rows) {
      const size = r.rows.length + (r.size ?? 0);
      if (out.length > 0 && bytes + size > CATALOG_BATCH_BYTES) break;
      bytes += size;
      out.push({
        messageId: r.message_id,
        catalog: JSON.parse(r.rows) as CatalogRows,
        text: r.text,
        html: r.html,
      });
    }
    return { rows: out, complete: rest.length < room && out.length === rows.length };
  }

  /**
   * One D1 batch for everything that happened since the last flush: catalog rows of accepted messages
   * first, then messages handed to origins (status sending, dispatches + 1), then outcomes, so a fast
   * result is never overwritten and nothing updates a row before it exists. A mark or an outcome for a
   * message that is neither catalogued nor in this batch's catalog rows waits for a later batch.
   * Building the statements is inside the same `try` as the write: whatever fails, every row of the
   * batch leaves `recording`.
   */
  private async flushResults(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const { rows: catalog, complete } = this.catalogBatch();
    const inBatch = new Set(catalog.map((c) => c.messageId));
    const ready = (id: string) => complete || inBatch.has(id) || this.isCatalogued(id);
    const waitingResults = this.pendingResults.filter((p) => !ready(p.row.message_id));
    const waitingSending = this.pendingSending.filter((id) => !ready(id));
    const batch = this.pendingResults.filter((p) => ready(p.row.message_id));
    const sending = this.pendingSending.filter((id) => ready(id));
    this.pendingResults = waitingResults;
    this.pendingSending = waitingSending;
    const stages = [...this.pendingStages].filter(([id]) => ready(id));
    for (const [id] of stages) this.pendingStages.delete(id);
    if (batch.length === 0 && sending.length === 0 && catalog.length === 0 && stages.length === 0) return;
    const now = Date.now();
    // A failing D1 may take long to answer; marks under write are still waiting for it.
    this.sendingInFlight += sending.length;
    try {
      const statements = [
        ...(catalog.length > 0
          ? catalogStatements(
              this.env.DB,
              catalog.map((c) => ({ ...c.catalog.message, textBody: c.text, htmlBody: c.html })),
              catalog.flatMap((c) => c.catalog.recipients),
              catalog.flatMap((c) => c.catalog.events),
            )
          : []),
        // SenderKit rows of /v1 sends, after the messages rows they extend (db/sk-messages.ts).
        ...skCatalogStatements(
          this.env.DB,
          catalog.flatMap((c) => (c.catalog.senderkit ? [c.catalog.senderkit] : [])),
        ),
        ...(sending.length > 0 ? markSendingStatements(this.env.DB, sending, now) : []),
        // After the marks (processing), before the outcomes: a stage never overwrites one.
        ...stageStatements(this.env.DB, stages, now),
        // One statement per kind of row for all outcomes of the batch (resultStatements).
        ...resultStatements(
          this.env.DB,
          batch.map(({ row, plan }) => ({
            messageId: row.message_id,
            now,
            events: plan.events(row.tenant_id),
            recipientStatuses: plan.recipientStatuses,
            status: plan.status,
            // The first delivered recipient stamps delivered_at; later attempts keep it (COALESCE).
            ...(plan.totals.delivered > row.delivered ? { deliveredAt: now } : {}),
            errorMessage: plan.errorMessage,
            nextAttemptAt: plan.retryRecipients.length > 0 ? plan.retryAt : null,
            deferrals: plan.deferrals,
          })),
        ),
      ];
      // Raw D1 statements (db/messages.ts binds each kind of row as one JSON list), one batch().
      if (statements.length > 0) await this.env.DB.batch(statements);
    } catch (err) {
      this.sendingInFlight -= sending.length;
      for (const p of batch) this.recording.delete(p.row.message_id);
      // Stages are advisory: tried again with the next flush while there is room.
      for (const [id, stage] of stages) {
        if (this.pendingStages.size < MAX_PENDING_STAGES && !this.pendingStages.has(id))
          this.pendingStages.set(id, stage);
      }
      this.flushFailed(batch, sending, catalog.length, err);
      return;
    }
    this.sendingInFlight -= sending.length;
    for (const p of batch) this.recording.delete(p.row.message_id);
    // D1 has these events: staged for the webhooks in this same synchronous block, so a restart
    // either replays the batch (same events) or finds them staged (services/webhook-handoff.ts).
    // The hand-off itself is not awaited: it delays no flush and no accept.
    this.handOffEvents([
      ...catalog.flatMap((c) => c.catalog.events),
      ...batch.flatMap(({ row, plan }) => plan.events(row.tenant_id)),
    ]);
    // D1 has them: noted in one synchronous block (one implicit transaction), so a restart either
    // replays the whole (idempotent) batch or none of it. One statement per kind of change, not per row.
    if (catalog.length > 0) {
      this.sql.exec(
        "DELETE FROM catalog WHERE message_id IN (SELECT value FROM json_each(?))",
        JSON.stringify(catalog.map((c) => c.messageId)),
      );
    }
    // A batch that had to leave catalog rows behind (it was full) goes on at once. Rows accepted while
    // this one was being written wait for the flush their accept scheduled (CATALOG_FLUSH_MS), so they
    // share a batch: flushing them at once made a busy hub write a D1 batch of ~5 rows per D1 round
    // trip instead of one per interval (docs/performance.md, "The catalog flush's cadence").
    if (catalog.length > 0 && !complete && this.hasUncatalogued()) this.scheduleFlush(0);
    else if (this.pendingResults.length + this.pendingSending.length > 0) this.scheduleFlush();

    const acks = new Map<WebSocket, string[]>();
    const done: string[] = [];
    const kept: KeptEnd[] = [];
    for (const { ws, jobId, row, plan, duplicates } of batch) {
      if (plan.retryRecipients.length > 0) {
        this.sql.exec(
          `UPDATE outbox SET state = 'ready', recipients = ?, due_at = ?, deferrals = ?, lease_link = NULL,
             lease_node = NULL, lease_boot = NULL, lease_until = NULL, acked = 0,
             delivered = ?, bounced = ?, failed = ? WHERE message_id = ?`,
          JSON.stringify(plan.retryRecipients),
          plan.retryAt,
          plan.deferrals,
          plan.totals.delivered,
          plan.totals.bounced,
          plan.totals.failed,
          row.message_id,
        );
      } else {
        done.push(row.message_id);
        if (RETRIABLE_FINAL.has(plan.status)) {
          const delivered = plan.recipientStatuses
            .filter((r) => r.status === "delivered")
            .map((r) => r.email);
          kept.push([row.message_id, plan.status, delivered]);
        }
      }
      const to = ws && jobId !== null ? [{ ws, jobId }, ...duplicates] : duplicates;
      for (const t of to) {
        const list = acks.get(t.ws);
        if (list) list.push(t.jobId);
        else acks.set(t.ws, [t.jobId]);
      }
    }
    // What a retry needs is copied out before the payload goes (services/message-retry.ts).
    if (kept.length > 0) keepForRetry(this.sql, kept, now, this.config.MAX_QUEUE_AGE_MS);
    if (done.length > 0) this.deleteMessages(done);
    // A lost resultAck costs a re-send from the origin, which is acknowledged then: no need to act here.
    for (const [ws, jobIds] of acks) this.send(ws, { type: "resultAck", jobIds });
    await this.scheduleAlarm();
  }

  /** Messages whose final outcome is in D1 leave the outbox, payload and all (one statement each). */
  private deleteMessages(messageIds: string[]): void {
    const ids = JSON.stringify(messageIds);
    this.sql.exec(OUTBOX_SQL.finished, ids);
    this.sql.exec("DELETE FROM outbox_entry WHERE message_id IN (SELECT value FROM json_each(?))", ids);
    forgetMessages(this.sql, ids);
  }

  private flushFailed(batch: PendingResult[], sending: string[], catalogRows: number, err: unknown): void {
    // The `sending` marks go into the next flush (bounded: dispatch pauses past MAX_PENDING_SENDING).
    this.pendingSending.unshift(...sending);
    for (const { ws, row } of batch) {
      if (ws) {
        // Not acknowledged: the origin re-sends it, and a later success acknowledges that copy.
        this.sql.exec(
          "UPDATE outbox SET state = 'leased' WHERE message_id = ? AND state = 'recording'",
          row.message_id,
        );
      } else {
        // A cancelled message stays cancelled (services/batch-holds.ts); the alarm queues it again.
        this.sql.exec(
          `UPDATE outbox SET state = ${UNRECORDED_STATE_SQL}, due_at = ? WHERE message_id = ? AND state = 'recording'`,
          Date.now() + UNSENDABLE_RETRY_MS,
          row.message_id,
        );
        if (row.state === "cancelled") void this.armAlarmBy(Date.now() + UNSENDABLE_RETRY_MS);
      }
    }
    console.error(
      JSON.stringify({
        level: "error",
        msg: "recording results failed",
        count: batch.length,
        sending: this.pendingSending.length,
        catalog: catalogRows,
        error: errorText(err),
      }),
    );
    // Catalog rows wait in storage; they are retried until D1 takes them (the alarm too, if this timer is lost).
    if (this.pendingSending.length > 0 || catalogRows > 0) this.scheduleFlush(FLUSH_RETRY_MS, true);
  }

  /** Messages nobody could deliver within the maximum queue age end as failed, never silently. */
  private async expireOldMessages(now: number): Promise<void> {
    const rows = this.sql
      .exec<OutboxRow>(
        // Not before its catalog rows are in D1: the failure updates them.
        OUTBOX_SQL.expired,
        now - this.config.MAX_QUEUE_AGE_MS,
      )
      .toArray();
    for (const row of rows) {
      try {
        const recipients = JSON.parse(row.recipients) as string[];
        // Ids fixed by the message and its enqueue time (as services/batch-holds.ts makes them): an
        // expiry run again after a restart records, counts and posts nothing twice, even for a message
        // never dispatched, while a message queued again (a retry) that expires again gets new ones.
        const dropped = recipients.map((r, i) => ({
          ...eventRow(row, "dropped", r, now, {
            reason: "expired: not delivered within the maximum queue age",
          }),
          id: `evt_${row.message_id.slice(4)}E${row.enqueued_at.toString(36)}R${i.toString(36)}`,
        }));
        const statements = recordResultStatements(this.db, {
          messageId: row.message_id,
          now,
          events: dropped,
          recipientStatuses: recipients.map((email) => ({ email: email.toLowerCase(), status: "failed" })),
          status: row.delivered > 0 ? "delivered" : "failed",
          errorMessage: "Expired in queue: no origin delivered it within the maximum queue age",
          nextAttemptAt: null,
        });
        await this.db.batch(statements as [never]);
        // Staged with the deletion below (one synchronous block): a restart before it expires again, same ids.
        this.handOffEvents(dropped);
        // Expired unsent: retriable like any failure (services/message-retry.ts).
        if (row.delivered === 0) {
          keepForRetry(this.sql, [[row.message_id, "failed", []]], now, this.config.MAX_QUEUE_AGE_MS);
        }
        this.deleteMessages([row.message_id]);
      } catch (err) {
        console.error(
          JSON.stringify({ level: "error", msg: "expiring message failed", error: errorText(err) }),
        );
      }
    }
  }

  private async scheduleAlarm(): Promise<void> {
    const next = this.sql
      .exec<{ t: number | null }>(
        OUTBOX_SQL.nextWake,
        // Any due time counts: due rows wait for credit (below).
        0,
        this.config.MAX_QUEUE_AGE_MS,
        // Catalog rows still waiting: D1 is failing or a timer was lost; try again in FLUSH_RETRY_MS.
        Date.now() + FLUSH_RETRY_MS,
      )
      .one().t;
    if (next === null) return;
    // Ready rows that are already due wait for link credit, not for time: no need to spin the alarm.
    const hasCredit =
      this.links().some((l) => l.state.credits > 0) &&
      this.sendingMarksWaiting() < MAX_PENDING_SENDING &&
      Date.now() >= this.suppressionRetryAt;
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
        OUTBOX_SQL.nextWake,
        now + 1,
        this.config.MAX_QUEUE_AGE_MS,
        now + FLUSH_RETRY_MS,
      )
      .one().t;
    return t === null ? null : Math.max(t, now + MIN_ALARM_GAP_MS);
  }

  /**
   * Bounces and complaints that came back by mail (docs/bounces.md): recorded in D1 once per event
   * key, then acknowledged. A failed write is not acknowledged, so the origin sends the events again.
   * Any shard may record them: they touch D1 only, never this shard's outbox.
   */
  private async recordInbound(
    ws: WebSocket,
    frame: Extract<OriginFrame, { type: "inbound" }>,
  ): Promise<void> {
    try {
      const targets = await loadInboundTargets(
        this.db,
        frame.events.map((e) => e.messageId),
      );
      const plan = planInboundEvents(frame.events, targets);
      const statements = inboundStatements(this.db, plan);
      if (statements.length > 0) await this.db.batch(statements as [never]);
      // D1 has them: webhooks hear of them as of the flush's events (the queue de-duplicates by event id,
      // so a re-sent frame queues nothing twice).
      // Staged before the ack: a restart before it means no ack, and the origin sends them again.
      if (plan.events.length > 0) this.handOffEvents(plan.events);
      for (const s of plan.skipped) {
        console.log(JSON.stringify({ level: "info", msg: "inbound event not recorded", ...s }));
      }
    } catch (err) {
      console.error(
        JSON.stringify({ level: "error", msg: "recording inbound events failed", error: errorText(err) }),
      );
      return;
    }
    this.send(ws, { type: "inboundAck", eventKeys: frame.events.map((e) => e.eventKey) });
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
