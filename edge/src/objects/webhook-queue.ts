/**
 * WebhookQueue: one Durable Object per tenant (named by the tenant id), holding that tenant's
 * webhook configuration and its durable delivery queue in the object's own SQLite
 * (docs/api/webhooks.md). Tenant isolation is by construction: a tenant's requests only ever reach
 * its own object, and the object refuses a call naming another tenant.
 *
 * Storage:
 *  - `endpoint`: ScaiSend endpoints (`wh_…`, several) and the SendGrid Event Webhook settings (the
 *    row `event_settings`): url, the events they want, enabled, the sealed `whsec_…` secret, and the
 *    health counters (consecutive failures, disabled_at).
 *  - `signing_key`: the tenant's ECDSA P-256 pair for SendGrid's Signed Event Webhook (private key
 *    sealed under SECRETS_KEY).
 *  - `seen`: the dedupe key of every event queued in the last SEEN_RETENTION_MS, so a replayed
 *    flush or a result recorded twice never queues a second event (services/webhook-events.ts).
 *  - `pending`: events waiting to be put in a delivery (batched within BATCH_WINDOW_MS), each with
 *    when it was queued (`at`; null for rows queued before that column existed: due).
 *  - `delivery` + `attempt`: one POST's bytes, its state (pending → succeeded | failed), when it is
 *    next due, and every attempt made (the delivery log the API reads). A succeeded delivery drops
 *    its body at once; a failed one keeps it until `body_until` (WEBHOOK_RESEND_RETENTION_MS, within
 *    RESEND_CAP_BYTES per endpoint), so it can be re-sent (docs/api/webhooks.md#retry-now).
 *
 * Delivery (`pump`): pending events become deliveries (at most BATCH_MAX_EVENTS per POST, per
 * endpoint), every due delivery is POSTed through the SSRF guard, and the outcome recorded. A
 * delivery is leased before its POST (next_at moved past the deadline) in the same synchronous block
 * that reads it, so two pumps never post one delivery and an object that stops mid-POST tries it
 * again: at-least-once, with the same event ids and the same body. The pump runs from the alarm, and
 * also from a hand-off that finds work already due (the oldest pending event has waited its batching
 * window, or a retry is due), without the hub awaiting it: under a stream of hand-offs the alarm is
 * delivered late (docs/api/webhooks.md#latency), the hand-offs themselves are not.
 */
import { DurableObject } from "cloudflare:workers";
import { newId, ulid } from "../../../shared/ids.ts";
import { loadConfig, type Bindings, type Config } from "../env.ts";
import { open, seal, type Keyring } from "../lib/secret-box.ts";
import {
  AUTO_DISABLE_AFTER,
  BATCH_MAX_EVENTS,
  bodyFor,
  DELIVERY_TIMEOUT_MS,
  headersFor,
  MAX_ATTEMPTS,
  retryDelayMs,
  wants,
  type EndpointKind,
} from "../services/webhook-delivery.ts";
import {
  dedupeKey,
  SENDGRID_FLAG,
  SENDGRID_FLAGS,
  toWebhookEvent,
  type FlushedEvent,
  type MessageInfo,
  type QueuedEvent,
} from "../services/webhook-events.ts";
import { generateSigningKey, newSigningSecret } from "../services/webhook-signing.ts";
import { resealWebhookSecrets, type WebhookResealResult } from "../services/webhook-secrets-reseal.ts";
import { requestToken, TOKEN_TIMEOUT_MS, type OAuthClient, type Token } from "../services/webhook-oauth.ts";
import {
  checkUrl,
  dohAddressResolver,
  guardedPost,
  parseAllowlist,
  UnsafeUrlError,
  type Allowlist,
  type PostOutcome,
  type Resolver,
} from "../services/webhook-ssrf.ts";

export const SETTINGS_ID = "event_settings";
export const MAX_ENDPOINTS = 20;
/** Events arriving within this window share a POST. */
export const BATCH_WINDOW_MS = 200;
/** POSTs made at once by one object. */
const PARALLEL_POSTS = 8;
const SEEN_RETENTION_MS = 4 * 24 * 3600_000;
/** Finished deliveries stay in the log this long. */
export const LOG_RETENTION_MS = 7 * 24 * 3600_000;
/**
 * The bodies of one endpoint's failed deliveries kept for re-sending, at most (UTF-8 bytes): past
 * it the oldest failures drop theirs first (docs/api/webhooks.md#retry-now).
 */
export const RESEND_CAP_BYTES = 16 * 1024 * 1024;
/** `body_until` of a failed delivery whose body the cap dropped (a time long past). */
const DROPPED_BY_CAP = 0;

export type Outcome<T> =
  { ok: true; value: T } | { ok: false; code: "invalid_request" | "not_found"; message: string };

const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
const bad = (message: string): Outcome<never> => ({ ok: false, code: "invalid_request", message });
const missing = (): Outcome<never> => ({ ok: false, code: "not_found", message: "Webhook not found" });

interface EndpointRow extends Record<string, SqlStorageValue> {
  id: string;
  kind: EndpointKind;
  url: string;
  events: string;
  enabled: number;
  secret: string | null;
  created_at: number;
  updated_at: number;
  last_success_at: number | null;
  last_failure_at: number | null;
  failure_count: number;
  disabled_at: number | null;
  /** OAuth2 client credentials (services/webhook-oauth.ts): all three or none; the secret sealed. */
  oauth_client_id: string | null;
  oauth_token_url: string | null;
  oauth_secret: string | null;
}

interface DeliveryRow extends Record<string, SqlStorageValue> {
  id: string;
  endpoint_id: string;
  event_ids: string;
  body: string | null;
  state: "pending" | "succeeded" | "failed";
  attempts: number;
  next_at: number | null;
  created_at: number;
  done_at: number | null;
  /**
   * A failed delivery: until when its body is kept for re-sending (DROPPED_BY_CAP when the cap took
   * it). Null otherwise, and for failures recorded before bodies were kept.
   */
  body_until: number | null;
}

type OAuthColumn = "oauth_client_id" | "oauth_token_url" | "oauth_secret";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export interface EndpointView {
  id: string;
  url: string;
  enabled_events: string[];
  enabled: boolean;
  created_at: string;
  updated_at: string;
  last_success_at: string | null;
  last_failure_at: string | null;
  failure_count: number;
  disabled_at: string | null;
  /** The OAuth2 client id and token URL, null without OAuth (the secret is never shown). */
  oauth_client_id: string | null;
  oauth_token_url: string | null;
}

function endpointView(r: EndpointRow): EndpointView {
  return {
    id: r.id,
    url: r.url,
    enabled_events: JSON.parse(r.events) as string[],
    enabled: r.enabled === 1,
    created_at: iso(r.created_at)!,
    updated_at: iso(r.updated_at)!,
    last_success_at: iso(r.last_success_at),
    last_failure_at: iso(r.last_failure_at),
    failure_count: r.failure_count,
    disabled_at: iso(r.disabled_at),
    oauth_client_id: r.oauth_client_id,
    oauth_token_url: r.oauth_token_url,
  };
}

export type EventSettingsView = Record<string, boolean | string>;

export interface DeliveryView {
  id: string;
  webhook_id: string;
  status: DeliveryRow["state"];
  event_count: number;
  event_ids: string[];
  created_at: string;
  next_attempt_at: string | null;
  finished_at: string | null;
  /** A failed delivery that can be re-sent (its body is kept): until when. Null otherwise. */
  resend_until: string | null;
  attempts: {
    attempt: number;
    at: string;
    status_code: number | null;
    error: string | null;
    duration_ms: number;
  }[];
}

export class WebhookQueue extends DurableObject<Bindings> {
  private readonly sql: SqlStorage;
  private readonly config: Config;
  private readonly allow: Allowlist;
  /** The clock every decision reads; tests move it to run the retry schedule in compressed time. */
  clock: () => number = () => Date.now();
  /** Where POSTs go; tests hand in a receiver. */
  fetcher: (req: Request) => Promise<Response> = (req) => fetch(req);
  /** How long a receiver has to answer (tests shorten it). */
  timeoutMs = DELIVERY_TIMEOUT_MS;
  /** The bytes of failed bodies kept per endpoint (tests shrink it). */
  resendCapBytes = RESEND_CAP_BYTES;
  /** How host names are resolved for the SSRF guard (DoH by default). */
  resolver: Resolver;
  /** Tests set it: every hand-off is refused with this error (a queue that is down, say). */
  refuseHandoffs: string | null = null;
  /** Hand-offs answered since the object started (tests read it). */
  handoffs = 0;
  /** The pump under way (alarm or hand-off), and whether another call asked for a round after it. */
  private pumping: Promise<void> | null = null;
  private pumpAgain = false;
  /** Deliveries the running pump has leased and not yet recorded: a retry leaves them alone. */
  private readonly leased = new Set<string>();
  /** OAuth2 tokens by endpoint id, until they expire; dropped when the endpoint's credentials change. */
  private readonly tokens = new Map<string, Token>();

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    const loaded = loadConfig(env);
    if (!loaded.ok) throw new Error(`WebhookQueue misconfigured: ${loaded.problems.join("; ")}`);
    this.config = loaded.config;
    const allow = parseAllowlist(this.config.WEBHOOK_ALLOW_PRIVATE);
    if (typeof allow === "string") throw new Error(`WebhookQueue misconfigured: ${allow}`);
    this.allow = allow;
    this.resolver = dohAddressResolver(this.config.DNS_RESOLVER_URL, this.config.DNS_TIMEOUT_MS);
    ctx.storage.transactionSync(() => this.createSchema());
  }

  private createSchema(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS endpoint (
      id TEXT PRIMARY KEY,
      kind TEXT NOT NULL,
      url TEXT NOT NULL,
      events TEXT NOT NULL,
      enabled INTEGER NOT NULL,
      secret TEXT,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      last_success_at INTEGER,
      last_failure_at INTEGER,
      failure_count INTEGER NOT NULL DEFAULT 0,
      disabled_at INTEGER
    )`);
    // Added after the first objects were made: an object made before gets the columns here.
    const columns = new Set(
      this.sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('endpoint')")
        .toArray()
        .map((c) => c.name),
    );
    for (const c of ["oauth_client_id", "oauth_token_url", "oauth_secret"])
      if (!columns.has(c)) this.sql.exec(`ALTER TABLE endpoint ADD COLUMN ${c} TEXT`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS signing_key (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      public_key TEXT NOT NULL,
      private_key TEXT NOT NULL
    )`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at INTEGER NOT NULL)`);
    this.sql.exec(`CREATE INDEX IF NOT EXISTS seen_at ON seen (at)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS pending (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      endpoint_id TEXT NOT NULL,
      event TEXT NOT NULL
    )`);
    this.sql.exec(`CREATE INDEX IF NOT EXISTS pending_endpoint ON pending (endpoint_id, seq)`);
    // Added after the first objects were made (when an event was queued, for the hand-off's pump).
    const pendingColumns = this.sql
      .exec<{ name: string }>("SELECT name FROM pragma_table_info('pending')")
      .toArray()
      .map((c) => c.name);
    if (!pendingColumns.includes("at")) this.sql.exec("ALTER TABLE pending ADD COLUMN at INTEGER");
    this.sql.exec(`CREATE TABLE IF NOT EXISTS delivery (
      id TEXT PRIMARY KEY,
      endpoint_id TEXT NOT NULL,
      event_ids TEXT NOT NULL,
      body TEXT,
      state TEXT NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      next_at INTEGER,
      created_at INTEGER NOT NULL,
      done_at INTEGER
    )`);
    // Added after the first objects were made (failed bodies kept for re-sending).
    const deliveryColumns = this.sql
      .exec<{ name: string }>("SELECT name FROM pragma_table_info('delivery')")
      .toArray()
      .map((c) => c.name);
    if (!deliveryColumns.includes("body_until"))
      this.sql.exec("ALTER TABLE delivery ADD COLUMN body_until INTEGER");
    this.sql.exec(`CREATE INDEX IF NOT EXISTS delivery_due ON delivery (state, next_at)`);
    this.sql.exec(`CREATE INDEX IF NOT EXISTS delivery_endpoint ON delivery (endpoint_id, created_at)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS attempt (
      delivery_id TEXT NOT NULL,
      n INTEGER NOT NULL,
      at INTEGER NOT NULL,
      status_code INTEGER,
      error TEXT,
      duration_ms INTEGER NOT NULL,
      PRIMARY KEY (delivery_id, n)
    )`);
  }

  // ── Tenant binding ────────────────────────────────────────────────────────────────────────────

  /** The first call names the object's tenant; a call for another tenant is a routing bug. */
  private bind(tenantId: string): void {
    const row = this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'tenant'").toArray()[0];
    if (!row) this.sql.exec("INSERT INTO meta (key, value) VALUES ('tenant', ?)", tenantId);
    else if (row.value !== tenantId) throw new Error(`WebhookQueue of ${row.value} called for ${tenantId}`);
  }

  private get keys(): Keyring {
    return { current: this.config.SECRETS_KEY, previous: this.config.SECRETS_KEY_PREVIOUS };
  }

  private guard() {
    return { resolve: this.resolver, allow: this.allow, allowHttpAnywhere: this.config.DEV_MODE };
  }

  /** The URL as the guard sees it now, or the reason it is refused. */
  private async screen(url: string): Promise<string | null> {
    try {
      await checkUrl(url, this.guard());
      return null;
    } catch (err) {
      if (err instanceof UnsafeUrlError) return `url ${err.message}`;
      throw err;
    }
  }

  /** The token URL as the guard sees it now (services/webhook-oauth.ts), or the reason it is refused. */
  private async screenOAuth(oauth: OAuthClient | null | undefined): Promise<string | null> {
    if (!oauth) return null;
    const refused = await this.screen(oauth.tokenUrl);
    return refused ? refused.replace(/^url /, "oauth_token_url ") : null;
  }

  /** Sets (or with null removes) an endpoint's OAuth2 client credentials, the secret sealed to it. */
  private async storeOAuth(tenantId: string, id: string, oauth: OAuthClient | null): Promise<void> {
    this.tokens.delete(id);
    const sealed = oauth
      ? await seal(this.keys, oauth.clientSecret, `webhook-oauth:${tenantId}:${id}`)
      : null;
    this.sql.exec(
      "UPDATE endpoint SET oauth_client_id = ?, oauth_token_url = ?, oauth_secret = ?, updated_at = ? WHERE id = ?",
      oauth?.clientId ?? null,
      oauth?.tokenUrl ?? null,
      sealed,
      this.clock(),
      id,
    );
  }

  /** A bearer token for the endpoint's POSTs: the kept one while it lasts, else a new one. */
  private async bearerFor(
    tenantId: string,
    ep: { id: string; oauth_client_id: string; oauth_token_url: string; oauth_secret: string },
    client?: OAuthClient,
  ): Promise<string | { error: string }> {
    const kept = client ? undefined : this.tokens.get(ep.id);
    if (kept && kept.expiresAt > this.clock()) return kept.token;
    const c = client ?? {
      clientId: ep.oauth_client_id,
      clientSecret: await open(this.keys, ep.oauth_secret, `webhook-oauth:${tenantId}:${ep.id}`),
      tokenUrl: ep.oauth_token_url,
    };
    const t = await requestToken(c, {
      ...this.guard(),
      fetch: this.fetcher,
      now: () => this.clock(),
      timeoutMs: Math.min(this.timeoutMs, TOKEN_TIMEOUT_MS),
    });
    if ("error" in t) return { error: `oauth: ${t.error}` };
    if (!client) this.tokens.set(ep.id, t);
    return t.token;
  }

  private endpoint(id: string): EndpointRow | undefined {
    return this.sql.exec<EndpointRow>("SELECT * FROM endpoint WHERE id = ?", id).toArray()[0];
  }

  // ── ScaiSend endpoints (/v3/user/webhooks) ───────────────────────────────────────────────────

  async createEndpoint(
    tenantId: string,
    input: { url: string; enabledEvents: string[]; oauth?: OAuthClient },
  ): Promise<Outcome<EndpointView & { signing_secret: string }>> {
    this.bind(tenantId);
    const count = this.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM endpoint WHERE kind = 'scaisend'")
      .one().n;
    if (count >= MAX_ENDPOINTS) return bad(`a tenant may have at most ${MAX_ENDPOINTS} webhook endpoints`);
    const refused = (await this.screen(input.url)) ?? (await this.screenOAuth(input.oauth));
    if (refused) return bad(refused);
    const now = this.clock();
    const id = `wh_${ulid(now)}`;
    const secret = newSigningSecret();
    const sealed = await seal(this.keys, secret, `webhook:${tenantId}:${id}`);
    this.sql.exec(
      `INSERT INTO endpoint (id, kind, url, events, enabled, secret, created_at, updated_at)
       VALUES (?, 'scaisend', ?, ?, 1, ?, ?, ?)`,
      id,
      input.url,
      JSON.stringify(input.enabledEvents),
      sealed,
      now,
      now,
    );
    if (input.oauth) await this.storeOAuth(tenantId, id, input.oauth);
    return ok({ ...endpointView(this.endpoint(id)!), signing_secret: secret });
  }

  async listEndpoints(
    tenantId: string,
    q: { page: number; pageSize: number; isActive: boolean | null },
  ): Promise<Outcome<{ webhooks: EndpointView[]; total: number }>> {
    this.bind(tenantId);
    const active = "(enabled = 1 AND disabled_at IS NULL)";
    const where = q.isActive === null ? "" : q.isActive ? `AND ${active}` : `AND NOT ${active}`;
    const total = this.sql
      .exec<{ n: number }>(`SELECT COUNT(*) AS n FROM endpoint WHERE kind = 'scaisend' ${where}`)
      .one().n;
    const rows = this.sql
      .exec<EndpointRow>(
        `SELECT * FROM endpoint WHERE kind = 'scaisend' ${where} ORDER BY id LIMIT ? OFFSET ?`,
        q.pageSize,
        (q.page - 1) * q.pageSize,
      )
      .toArray();
    return ok({ webhooks: rows.map(endpointView), total });
  }

  async getEndpoint(tenantId: string, id: string): Promise<Outcome<EndpointView>> {
    this.bind(tenantId);
    const row = this.endpoint(id);
    return row && row.kind === "scaisend" ? ok(endpointView(row)) : missing();
  }

  async updateEndpoint(
    tenantId: string,
    id: string,
    patch: { url?: string; enabledEvents?: string[]; enabled?: boolean; oauth?: OAuthClient | null },
  ): Promise<Outcome<EndpointView>> {
    this.bind(tenantId);
    const row = this.endpoint(id);
    if (!row || row.kind !== "scaisend") return missing();
    if (patch.url !== undefined) {
      const refused = await this.screen(patch.url);
      if (refused) return bad(refused);
    }
    const refusedOAuth = await this.screenOAuth(patch.oauth);
    if (refusedOAuth) return bad(refusedOAuth);
    if (patch.oauth !== undefined) await this.storeOAuth(tenantId, id, patch.oauth);
    this.applyPatch(id, patch);
    return ok(endpointView(this.endpoint(id)!));
  }

  /** Changes and re-enabling: `enabled: true` also ends an auto-disable and restarts the count. */
  private applyPatch(id: string, patch: { url?: string; enabledEvents?: string[]; enabled?: boolean }): void {
    const now = this.clock();
    const row = this.endpoint(id)!;
    this.sql.exec(
      `UPDATE endpoint SET url = ?, events = ?, enabled = ?, updated_at = ?,
         disabled_at = CASE WHEN ? THEN NULL ELSE disabled_at END,
         failure_count = CASE WHEN ? THEN 0 ELSE failure_count END
       WHERE id = ?`,
      patch.url ?? row.url,
      patch.enabledEvents ? JSON.stringify(patch.enabledEvents) : row.events,
      patch.enabled === undefined ? row.enabled : patch.enabled ? 1 : 0,
      now,
      patch.enabled === true ? 1 : 0,
      patch.enabled === true ? 1 : 0,
      id,
    );
    // Deliveries that waited while the endpoint was off go out now, not at their next retry step:
    // whoever enabled it has fixed (or is watching) the receiver.
    if (patch.enabled === true) {
      this.sql.exec(
        "UPDATE delivery SET next_at = MIN(next_at, ?) WHERE endpoint_id = ? AND state = 'pending'",
        now,
        id,
      );
      void this.scheduleAlarm(now);
    }
  }

  async deleteEndpoint(tenantId: string, id: string): Promise<Outcome<null>> {
    this.bind(tenantId);
    const row = this.endpoint(id);
    if (!row || row.kind !== "scaisend") return missing();
    this.forget(id);
    return ok(null);
  }

  /** An endpoint and everything queued or logged for it. */
  private forget(id: string): void {
    this.ctx.storage.transactionSync(() => {
      this.sql.exec(
        "DELETE FROM attempt WHERE delivery_id IN (SELECT id FROM delivery WHERE endpoint_id = ?)",
        id,
      );
      this.sql.exec("DELETE FROM delivery WHERE endpoint_id = ?", id);
      this.sql.exec("DELETE FROM pending WHERE endpoint_id = ?", id);
      this.sql.exec("DELETE FROM endpoint WHERE id = ?", id);
    });
  }

  /** A new secret; the old one signs nothing from now on (every attempt reads the current one). */
  async rotateSecret(tenantId: string, id: string): Promise<Outcome<{ signing_secret: string }>> {
    this.bind(tenantId);
    const row = this.endpoint(id);
    if (!row || row.kind !== "scaisend") return missing();
    const secret = newSigningSecret();
    const sealed = await seal(this.keys, secret, `webhook:${tenantId}:${id}`);
    this.sql.exec("UPDATE endpoint SET secret = ?, updated_at = ? WHERE id = ?", sealed, this.clock(), id);
    return ok({ signing_secret: secret });
  }

  async deliveries(
    tenantId: string,
    id: string,
    limit: number,
  ): Promise<Outcome<{ deliveries: DeliveryView[] }>> {
    this.bind(tenantId);
    if (!this.endpoint(id)) return missing();
    const now = this.clock();
    const rows = this.sql
      .exec<DeliveryRow>(
        "SELECT * FROM delivery WHERE endpoint_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
        id,
        limit,
      )
      .toArray();
    const attempts = this.sql
      .exec<{
        delivery_id: string;
        n: number;
        at: number;
        status_code: number | null;
        error: string | null;
        duration_ms: number;
      }>(
        "SELECT * FROM attempt WHERE delivery_id IN (SELECT value FROM json_each(?)) ORDER BY n",
        JSON.stringify(rows.map((r) => r.id)),
      )
      .toArray();
    return ok({
      deliveries: rows.map((r) => ({
        id: r.id,
        webhook_id: r.endpoint_id,
        status: r.state,
        event_count: (JSON.parse(r.event_ids) as string[]).length,
        event_ids: JSON.parse(r.event_ids) as string[],
        created_at: iso(r.created_at)!,
        next_attempt_at: r.state === "pending" ? iso(r.next_at) : null,
        finished_at: iso(r.done_at),
        resend_until: this.resendable(r, now) ? iso(r.body_until) : null,
        attempts: attempts
          .filter((a) => a.delivery_id === r.id)
          .map((a) => ({
            attempt: a.n,
            at: iso(a.at)!,
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
          })),
      })),
    });
  }

  // ── SendGrid's Event Webhook settings ────────────────────────────────────────────────────────

  async getEventSettings(tenantId: string): Promise<Outcome<EventSettingsView>> {
    this.bind(tenantId);
    return ok(this.settingsView());
  }

  private settingsView(): EventSettingsView {
    const row = this.endpoint(SETTINGS_ID);
    const flags = row ? (JSON.parse(row.events) as string[]) : [];
    return {
      // SendGrid's shape has no disabled_at: an auto-disabled Event Webhook reads as not enabled.
      enabled: row?.enabled === 1 && row.disabled_at === null,
      url: row?.url ?? "",
      ...Object.fromEntries(SENDGRID_FLAGS.map((f) => [f, flags.includes(f)])),
      oauth_client_id: row?.oauth_client_id ?? "",
      oauth_token_url: row?.oauth_token_url ?? "",
    };
  }

  /**
   * The Event Webhook as the dashboard shows it (docs/dashboard.md#pages): the settings as GET
   * …/settings answers them, plus what SendGrid's shape has no field for (an auto-disable, the
   * health counters, whether POSTs are signed). Never a secret.
   */
  async eventWebhookSummary(tenantId: string): Promise<
    Outcome<{
      settings: EventSettingsView;
      configured: boolean;
      signed: boolean;
      disabled_at: string | null;
      failure_count: number;
      last_success_at: string | null;
      last_failure_at: string | null;
    }>
  > {
    this.bind(tenantId);
    const row = this.endpoint(SETTINGS_ID);
    return ok({
      settings: this.settingsView(),
      configured: row !== undefined,
      signed: this.signingKey() !== undefined,
      disabled_at: iso(row?.disabled_at ?? null),
      failure_count: row?.failure_count ?? 0,
      last_success_at: iso(row?.last_success_at ?? null),
      last_failure_at: iso(row?.last_failure_at ?? null),
    });
  }

  async patchEventSettings(
    tenantId: string,
    patch: { enabled?: boolean; url?: string; flags: Record<string, boolean>; oauth?: OAuthClient | null },
  ): Promise<Outcome<EventSettingsView>> {
    this.bind(tenantId);
    const now = this.clock();
    const row = this.endpoint(SETTINGS_ID);
    const url = patch.url ?? row?.url ?? "";
    const enabled = patch.enabled ?? row?.enabled === 1;
    if (enabled && url === "") return bad("url is required to enable the Event Webhook");
    if (url !== "" && (patch.url !== undefined || patch.enabled === true)) {
      const refused = await this.screen(url);
      if (refused) return bad(refused);
    }
    const refusedOAuth = await this.screenOAuth(patch.oauth);
    if (refusedOAuth) return bad(refusedOAuth);
    const flags = new Set(row ? (JSON.parse(row.events) as string[]) : []);
    for (const [f, on] of Object.entries(patch.flags)) {
      if (on) flags.add(f);
      else flags.delete(f);
    }
    if (!row) {
      this.sql.exec(
        `INSERT INTO endpoint (id, kind, url, events, enabled, created_at, updated_at)
         VALUES (?, 'sendgrid', ?, ?, ?, ?, ?)`,
        SETTINGS_ID,
        url,
        JSON.stringify([...flags]),
        enabled ? 1 : 0,
        now,
        now,
      );
    } else {
      // Only an explicit `enabled` is passed on: a flag change must not end an auto-disable.
      this.applyPatch(SETTINGS_ID, {
        url,
        enabledEvents: [...flags],
        ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}),
      });
    }
    if (patch.oauth !== undefined) await this.storeOAuth(tenantId, SETTINGS_ID, patch.oauth);
    return ok(this.settingsView());
  }

  async getSigned(tenantId: string): Promise<Outcome<{ public_key: string }>> {
    this.bind(tenantId);
    return ok({ public_key: this.signingKey()?.public_key ?? "" });
  }

  /** Enabling makes a key pair when there is none; disabling deletes it (as SendGrid does). */
  async patchSigned(tenantId: string, enabled: boolean): Promise<Outcome<{ public_key: string }>> {
    this.bind(tenantId);
    if (!enabled) {
      this.sql.exec("DELETE FROM signing_key");
      return ok({ public_key: "" });
    }
    const existing = this.signingKey();
    if (existing) return ok({ public_key: existing.public_key });
    const pair = await generateSigningKey();
    const sealed = await seal(this.keys, pair.privateKey, `webhook-signing-key:${tenantId}`);
    this.sql.exec(
      "INSERT OR REPLACE INTO signing_key (id, public_key, private_key) VALUES (1, ?, ?)",
      pair.publicKey,
      sealed,
    );
    return ok({ public_key: pair.publicKey });
  }

  private signingKey() {
    return this.sql
      .exec<{ public_key: string; private_key: string }>("SELECT public_key, private_key FROM signing_key")
      .toArray()[0];
  }

  /** POSTs one sample event in SendGrid's form to `url` (signed when signing is on). */
  async testEvent(tenantId: string, url: string, oauth?: OAuthClient): Promise<Outcome<PostOutcome>> {
    this.bind(tenantId);
    const refused = (await this.screen(url)) ?? (await this.screenOAuth(oauth));
    if (refused) return bad(refused);
    return this.sendTest(tenantId, url, oauth ? { client: oauth } : null);
  }

  /**
   * The test POST of `testEvent` to the Event Webhook's own URL, with its stored OAuth2 credentials
   * when it has them (the dashboard's test; the API's /test takes the URL and credentials instead).
   */
  async testEventSettings(tenantId: string): Promise<Outcome<PostOutcome & { url: string }>> {
    this.bind(tenantId);
    const row = this.endpoint(SETTINGS_ID);
    if (!row || row.url === "") return bad("the Event Webhook has no URL: set one first");
    const refused = await this.screen(row.url);
    if (refused) return bad(refused);
    const stored =
      row.oauth_client_id !== null && row.oauth_token_url !== null && row.oauth_secret !== null
        ? {
            stored: {
              id: row.id,
              oauth_client_id: row.oauth_client_id,
              oauth_token_url: row.oauth_token_url,
              oauth_secret: row.oauth_secret,
            },
          }
        : null;
    const r = await this.sendTest(tenantId, row.url, stored);
    return r.ok ? ok({ ...r.value, url: row.url }) : r;
  }

  private async sendTest(
    tenantId: string,
    url: string,
    oauth:
      | { client: OAuthClient }
      | {
          stored: { id: string; oauth_client_id: string; oauth_token_url: string; oauth_secret: string };
        }
      | null,
  ): Promise<Outcome<PostOutcome>> {
    const now = this.clock();
    const sample: QueuedEvent = {
      event_id: newId("evt", now),
      event_type: "processed",
      timestamp: Math.floor(now / 1000),
      message_id: newId("msg", now),
      recipient_email: "example@test.com",
      tenant_id: tenantId,
      metadata: {},
      smtp_id: "<test@scaisend.test>",
    };
    const body = bodyFor("sendgrid", [sample]);
    const secret = await this.secretOf(tenantId, { id: SETTINGS_ID, kind: "sendgrid", secret: null });
    const headers = await headersFor(
      { kind: "sendgrid", endpointId: SETTINGS_ID, deliveryId: "test", secret },
      body,
      now,
    );
    if (oauth) {
      const bearer =
        "client" in oauth
          ? await this.bearerFor(
              tenantId,
              { id: "test", oauth_client_id: "", oauth_token_url: "", oauth_secret: "" },
              oauth.client,
            )
          : await this.bearerFor(tenantId, oauth.stored);
      if (typeof bearer !== "string") return bad(`the test POST to ${url} failed: ${bearer.error}`);
      headers["authorization"] = `Bearer ${bearer}`;
    }
    const outcome = await this.post(url, headers, body);
    return outcome.error === null ? ok(outcome) : bad(`the test POST to ${url} failed: ${outcome.error}`);
  }

  // ── Fan-out ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Events of a catalog flush (their rows are in D1). Queued once per subscribed active endpoint;
   * an event already seen is skipped. Returns how many (event, endpoint) pairs were queued.
   */
  async enqueue(tenantId: string, events: FlushedEvent[]): Promise<number> {
    this.bind(tenantId);
    const endpoints = this.activeEndpoints();
    if (endpoints.length === 0 || events.length === 0) return 0;
    const now = this.clock();
    const keys = events.map(dedupeKey);
    const seen = new Set(
      this.sql
        .exec<{ key: string }>(
          "SELECT key FROM seen WHERE key IN (SELECT value FROM json_each(?))",
          JSON.stringify(keys),
        )
        .toArray()
        .map((r) => r.key),
    );
    const fresh = events.filter((_e, i) => !seen.has(keys[i]!) && keys.indexOf(keys[i]!) === i);
    const wanted = fresh.filter((e) =>
      endpoints.some((ep) =>
        wants(ep.kind, JSON.parse(ep.events) as string[], e.eventType, (t) => SENDGRID_FLAG[t]),
      ),
    );
    if (wanted.length === 0) return 0;
    const info = await this.messageInfo(tenantId, [...new Set(wanted.map((e) => e.messageId))]);
    let queued = 0;
    this.ctx.storage.transactionSync(() => {
      for (const e of wanted) {
        // Checked again here: another hand-off of the same event may have run during the D1 read.
        const first = this.sql.exec("INSERT OR IGNORE INTO seen (key, at) VALUES (?, ?)", dedupeKey(e), now);
        if (first.rowsWritten === 0) continue;
        const envelope = JSON.stringify(toWebhookEvent(e, info.get(e.messageId)));
        for (const ep of endpoints) {
          if (!wants(ep.kind, JSON.parse(ep.events) as string[], e.eventType, (t) => SENDGRID_FLAG[t]))
            continue;
          this.sql.exec(
            "INSERT INTO pending (endpoint_id, event, at) VALUES (?, ?, ?)",
            ep.id,
            envelope,
            now,
          );
          queued++;
        }
      }
    });
    await this.scheduleAlarm(now + BATCH_WINDOW_MS);
    return queued;
  }

  /**
   * The hub's durable hand-off (services/webhook-handoff.ts): `enqueue`, and how many endpoints are
   * active, so the hub can skip a tenant without webhooks for a while.
   */
  async handoff(tenantId: string, events: FlushedEvent[]): Promise<{ queued: number; endpoints: number }> {
    this.handoffs++;
    if (this.refuseHandoffs !== null) throw new Error(this.refuseHandoffs);
    const queued = await this.enqueue(tenantId, events);
    // Work already due goes out from here, not awaited: the hub's call returns at once. A pump that
    // fails leaves its rows as they were (leased ones due again later); the alarm set above remains.
    if (this.workDue(this.clock())) {
      this.pump().catch((err: unknown) =>
        console.error(
          JSON.stringify({
            level: "error",
            msg: "webhook pump after a hand-off failed; the alarm retries",
            tenantId,
            error: err instanceof Error ? err.message : String(err),
          }),
        ),
      );
    }
    return { queued, endpoints: this.activeEndpoints().length };
  }

  /** Whether the pump has something to do now: pending events past their window, or a due delivery. */
  private workDue(now: number): boolean {
    const oldest = this.sql
      .exec<{ t: number | null }>("SELECT MIN(coalesce(at, 0)) AS t FROM pending")
      .one().t;
    if (oldest !== null && oldest <= now - BATCH_WINDOW_MS) return true;
    return (
      this.sql
        .exec(
          `SELECT 1 FROM delivery d JOIN endpoint e ON e.id = d.endpoint_id
           WHERE d.state = 'pending' AND d.next_at <= ? AND e.enabled = 1 AND e.disabled_at IS NULL LIMIT 1`,
          now,
        )
        .toArray().length > 0
    );
  }

  private activeEndpoints(): EndpointRow[] {
    return this.sql
      .exec<EndpointRow>("SELECT * FROM endpoint WHERE enabled = 1 AND disabled_at IS NULL AND url != ''")
      .toArray();
  }

  /** Categories, custom args and the Message-ID of the events' messages, from the D1 catalog. */
  private async messageInfo(tenantId: string, ids: string[]): Promise<Map<string, MessageInfo>> {
    const out = new Map<string, MessageInfo>();
    const { results } = await this.env.DB.prepare(
      `SELECT id, categories, custom_args, message_id_header FROM messages
       WHERE tenant_id = ? AND id IN (SELECT value FROM json_each(?))`,
    )
      .bind(tenantId, JSON.stringify(ids))
      .all<{ id: string; categories: string; custom_args: string; message_id_header: string }>();
    for (const r of results) {
      out.set(r.id, {
        categories: JSON.parse(r.categories) as string[],
        customArgs: JSON.parse(r.custom_args) as Record<string, string>,
        messageIdHeader: r.message_id_header,
      });
    }
    return out;
  }

  // ── Delivery ─────────────────────────────────────────────────────────────────────────────────

  override async alarm(): Promise<void> {
    this.prune(this.clock());
    await this.pump();
  }

  /**
   * One pump at a time (a call during one makes it go round again once it is done, and waits for
   * that): so at most PARALLEL_POSTS POSTs run at once, whether the alarm or a hand-off started it.
   */
  private pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return this.pumping;
    }
    this.pumping = (async () => {
      try {
        do {
          this.pumpAgain = false;
          await this.pumpOnce();
        } while (this.pumpAgain);
      } finally {
        this.pumping = null;
      }
    })();
    return this.pumping;
  }

  /** Pending events → deliveries, then every due delivery POSTed (leased first), then the next alarm. */
  private async pumpOnce(): Promise<void> {
    const now = this.clock();
    this.formDeliveries(now);
    const due = this.sql
      .exec<DeliveryRow & Pick<EndpointRow, "secret" | "kind" | "url" | OAuthColumn>>(
        `SELECT d.*, e.secret, e.kind, e.url, e.oauth_client_id, e.oauth_token_url, e.oauth_secret
         FROM delivery d JOIN endpoint e ON e.id = d.endpoint_id
         WHERE d.state = 'pending' AND d.next_at <= ? AND e.enabled = 1 AND e.disabled_at IS NULL
         ORDER BY d.next_at LIMIT 64`,
        now,
      )
      .toArray();
    // Leased past the deadline first: an object that stops mid-POST tries again later, not never.
    for (const d of due) {
      this.sql.exec("UPDATE delivery SET next_at = ? WHERE id = ?", now + this.timeoutMs + 30_000, d.id);
      this.leased.add(d.id);
    }
    const tenant = this.sql
      .exec<{ value: string }>("SELECT value FROM meta WHERE key = 'tenant'")
      .toArray()[0]?.value;
    let next = 0;
    while (next < due.length) {
      const slice = due.slice(next, next + PARALLEL_POSTS);
      next += slice.length;
      await Promise.all(
        slice.map((d) => this.attempt(tenant ?? "", d).finally(() => this.leased.delete(d.id))),
      );
    }
    await this.scheduleAlarm(this.clock() + (due.length === 64 ? 0 : Infinity));
  }

  /** Pending events → deliveries: per endpoint, in arrival order, BATCH_MAX_EVENTS at most per POST. */
  private formDeliveries(now: number): void {
    const endpoints = this.sql
      .exec<{ endpoint_id: string }>("SELECT DISTINCT endpoint_id FROM pending")
      .toArray()
      .map((r) => r.endpoint_id);
    for (const endpointId of endpoints) {
      const ep = this.endpoint(endpointId);
      for (;;) {
        const rows = this.sql
          .exec<{ seq: number; event: string }>(
            "SELECT seq, event FROM pending WHERE endpoint_id = ? ORDER BY seq LIMIT ?",
            endpointId,
            BATCH_MAX_EVENTS,
          )
          .toArray();
        if (rows.length === 0) break;
        const events = rows.map((r) => JSON.parse(r.event) as QueuedEvent);
        this.ctx.storage.transactionSync(() => {
          if (ep) {
            this.sql.exec(
              `INSERT INTO delivery (id, endpoint_id, event_ids, body, state, attempts, next_at, created_at)
               VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)`,
              `whd_${ulid(now)}`,
              endpointId,
              JSON.stringify(events.map((e) => e.event_id)),
              bodyFor(ep.kind, events),
              now,
              now,
            );
          }
          this.sql.exec(
            "DELETE FROM pending WHERE endpoint_id = ? AND seq <= ?",
            endpointId,
            rows.at(-1)!.seq,
          );
        });
      }
    }
  }

  private prune(now: number): void {
    this.sql.exec("DELETE FROM seen WHERE at < ?", now - SEEN_RETENTION_MS);
    // Failed deliveries' bodies past their retention: the log keeps the delivery, it can no longer be re-sent.
    this.sql.exec(
      "UPDATE delivery SET body = NULL WHERE state = 'failed' AND body IS NOT NULL AND body_until <= ?",
      now,
    );
    this.sql.exec(
      `DELETE FROM attempt WHERE delivery_id IN (SELECT id FROM delivery WHERE state != 'pending' AND done_at < ?)`,
      now - LOG_RETENTION_MS,
    );
    this.sql.exec("DELETE FROM delivery WHERE state != 'pending' AND done_at < ?", now - LOG_RETENTION_MS);
  }

  private async secretOf(
    tenantId: string,
    ep: { id: string; kind: EndpointKind; secret: string | null },
  ): Promise<string | null> {
    if (ep.kind === "scaisend") {
      return ep.secret === null ? null : open(this.keys, ep.secret, `webhook:${tenantId}:${ep.id}`);
    }
    const key = this.signingKey();
    return key ? open(this.keys, key.private_key, `webhook-signing-key:${tenantId}`) : null;
  }

  private post(url: string, headers: Record<string, string>, body: string): Promise<PostOutcome> {
    return guardedPost(
      url,
      { headers, body, timeoutMs: this.timeoutMs },
      {
        ...this.guard(),
        fetch: this.fetcher,
        now: () => Date.now(),
      },
    );
  }

  private async attempt(
    tenantId: string,
    d: DeliveryRow & Pick<EndpointRow, "secret" | "kind" | "url" | OAuthColumn>,
  ): Promise<void> {
    const startedAt = this.clock();
    let outcome: PostOutcome;
    try {
      const secret = await this.secretOf(tenantId, { id: d.endpoint_id, kind: d.kind, secret: d.secret });
      const headers = await headersFor(
        { kind: d.kind, endpointId: d.endpoint_id, deliveryId: d.id, secret },
        d.body ?? "",
        startedAt,
      );
      let refusedToken: string | null = null;
      if (d.oauth_client_id !== null && d.oauth_token_url !== null && d.oauth_secret !== null) {
        const bearer = await this.bearerFor(tenantId, {
          id: d.endpoint_id,
          oauth_client_id: d.oauth_client_id,
          oauth_token_url: d.oauth_token_url,
          oauth_secret: d.oauth_secret,
        });
        if (typeof bearer === "string") headers["authorization"] = `Bearer ${bearer}`;
        else refusedToken = bearer.error;
      }
      outcome =
        refusedToken !== null
          ? { status: null, error: refusedToken, durationMs: this.clock() - startedAt }
          : await this.post(d.url, headers, d.body ?? "");
      // A token the receiver no longer takes (revoked early): the next attempt asks for a new one.
      if (outcome.status === 401) this.tokens.delete(d.endpoint_id);
    } catch (err) {
      // A secret that no longer opens (SECRETS_KEY rotated without the previous key): a failure to report.
      outcome = { status: null, error: err instanceof Error ? err.message : String(err), durationMs: 0 };
    }
    this.record(d, startedAt, outcome);
  }

  private record(d: DeliveryRow, at: number, outcome: PostOutcome): void {
    const n = d.attempts + 1;
    const now = this.clock();
    this.ctx.storage.transactionSync(() => {
      // Deleted with its endpoint while the POST was under way: nothing left to record.
      if (this.sql.exec("SELECT 1 FROM delivery WHERE id = ?", d.id).toArray().length === 0) return;
      this.sql.exec(
        "INSERT OR REPLACE INTO attempt (delivery_id, n, at, status_code, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)",
        d.id,
        n,
        at,
        outcome.status,
        outcome.error,
        Math.round(outcome.durationMs),
      );
      if (outcome.error === null) {
        this.sql.exec(
          "UPDATE delivery SET state = 'succeeded', attempts = ?, next_at = NULL, done_at = ?, body = NULL WHERE id = ?",
          n,
          now,
          d.id,
        );
        this.sql.exec(
          "UPDATE endpoint SET failure_count = 0, last_success_at = ? WHERE id = ?",
          now,
          d.endpoint_id,
        );
        return;
      }
      // A re-send of a failed delivery (attempt 7 on) is one attempt: it fails again at once.
      const delay = n >= MAX_ATTEMPTS ? null : retryDelayMs(n);
      if (delay === null) {
        // The body stays for a re-send, until the retention counted from the first failure.
        this.sql.exec(
          `UPDATE delivery SET state = 'failed', attempts = ?, next_at = NULL, done_at = ?,
             body_until = coalesce(body_until, ?) WHERE id = ?`,
          n,
          now,
          now + this.config.WEBHOOK_RESEND_RETENTION_MS,
          d.id,
        );
        this.capKeptBodies(d.endpoint_id);
      } else {
        this.sql.exec("UPDATE delivery SET attempts = ?, next_at = ? WHERE id = ?", n, at + delay, d.id);
      }
      this.sql.exec(
        `UPDATE endpoint SET failure_count = failure_count + 1, last_failure_at = ?,
           disabled_at = CASE WHEN disabled_at IS NULL AND failure_count + 1 >= ? THEN ? ELSE disabled_at END
         WHERE id = ?`,
        now,
        AUTO_DISABLE_AFTER,
        now,
        d.endpoint_id,
      );
    });
  }

  /**
   * The endpoint's kept failed bodies within resendCapBytes: newest failures first, the older ones
   * past the cap drop theirs (and are marked so, for the retry's 400).
   */
  private capKeptBodies(endpointId: string): void {
    const kept = this.sql
      .exec<{ id: string; bytes: number }>(
        `SELECT id, octet_length(body) AS bytes FROM delivery
         WHERE endpoint_id = ? AND state = 'failed' AND body IS NOT NULL ORDER BY done_at DESC, id DESC`,
        endpointId,
      )
      .toArray();
    let total = 0;
    for (const k of kept) {
      total += k.bytes;
      if (total > this.resendCapBytes)
        this.sql.exec("UPDATE delivery SET body = NULL, body_until = ? WHERE id = ?", DROPPED_BY_CAP, k.id);
    }
  }

  /** Whether a delivery is a failed one whose body is still kept for a re-send. */
  private resendable(d: DeliveryRow, now: number): boolean {
    return d.state === "failed" && d.body !== null && d.body_until !== null && d.body_until > now;
  }

  /**
   * The alarm at `at` at the latest: sooner when a delivery is due sooner. Deliveries of inactive
   * endpoints wait without an alarm until a PATCH enables them again.
   */
  private async scheduleAlarm(at: number): Promise<void> {
    const nextDue = this.sql
      .exec<{ t: number | null }>(
        `SELECT MIN(d.next_at) AS t FROM delivery d JOIN endpoint e ON e.id = d.endpoint_id
         WHERE d.state = 'pending' AND e.enabled = 1 AND e.disabled_at IS NULL`,
      )
      .one().t;
    const hasPending = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM pending").one().n > 0;
    // The sweep of the first kept failed body to expire (prune, from the alarm).
    const nextExpiry = this.sql
      .exec<{ t: number | null }>(
        "SELECT MIN(body_until) AS t FROM delivery WHERE state = 'failed' AND body IS NOT NULL",
      )
      .one().t;
    let want = Math.min(at, nextDue ?? Infinity, nextExpiry ?? Infinity);
    if (hasPending) want = Math.min(want, this.clock() + BATCH_WINDOW_MS);
    if (!Number.isFinite(want)) return;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > want) await this.ctx.storage.setAlarm(want);
  }

  /**
   * Retry now (docs/api/webhooks.md#retry-now). A pending delivery of an active endpoint takes its
   * next attempt at once instead of at its retry step. A failed one whose body is still kept is
   * re-sent: the same delivery (same id, same body, a fresh signature) is pending again, due now,
   * for one more attempt, logged after its others. Either way the attempt is the pump's, so it
   * is leased like any other and the one-pump-at-a-time rule holds: a retry of a delivery the pump
   * has leased (its POST under way) changes nothing, and two retries at once make one attempt.
   * A succeeded delivery, a failed one whose body has gone, or a disabled endpoint is a 400.
   */
  async retryDelivery(tenantId: string, endpointId: string, deliveryId: string): Promise<Outcome<null>> {
    this.bind(tenantId);
    const ep = this.endpoint(endpointId);
    // An endpoint, or the Event Webhook's settings row by its own id (…/event/settings/deliveries/…).
    if (!ep || (ep.kind === "sendgrid") !== (endpointId === SETTINGS_ID)) return missing();
    const d = this.sql
      .exec<DeliveryRow>("SELECT * FROM delivery WHERE id = ? AND endpoint_id = ?", deliveryId, endpointId)
      .toArray()[0];
    if (!d) return { ok: false, code: "not_found", message: "Delivery not found" };
    const now = this.clock();
    if (d.state === "succeeded")
      return bad("the delivery has succeeded; only a pending or failed delivery can be retried");
    if (d.state === "failed" && !this.resendable(d, now)) {
      const hours = this.config.WEBHOOK_RESEND_RETENTION_MS / 3600_000;
      return bad(
        d.body_until === DROPPED_BY_CAP
          ? `the delivery failed and its body is no longer kept: an endpoint keeps at most ${this.resendCapBytes} bytes of failed deliveries for re-sending, the newest first`
          : `the delivery failed and its body has expired: a failed delivery can be re-sent for ${hours} h after it failed`,
      );
    }
    if (ep.enabled !== 1 || ep.disabled_at !== null)
      return bad(
        `the ${ep.kind === "sendgrid" ? "Event Webhook" : "endpoint"} is disabled: enable it, and its pending deliveries go out at once`,
      );
    // Under way already (leased by the running pump): that attempt is the retry.
    if (this.leased.has(deliveryId)) return ok(null);
    if (d.state === "failed") {
      this.sql.exec(
        "UPDATE delivery SET state = 'pending', next_at = ?, done_at = NULL WHERE id = ? AND state = 'failed'",
        now,
        deliveryId,
      );
    } else {
      this.sql.exec("UPDATE delivery SET next_at = MIN(next_at, ?) WHERE id = ?", now, deliveryId);
    }
    await this.scheduleAlarm(now);
    return ok(null);
  }

  /** For tests: the scheduled alarm time. */
  async alarmAt(): Promise<number | null> {
    return this.ctx.storage.getAlarm();
  }

  /**
   * SECRETS_KEY rotation (services/webhook-secrets-reseal.ts): re-seals this tenant's webhook
   * secrets under the keyring the operator's reseal request runs with (the same Worker's config).
   */
  async resealSecrets(tenantId: string, keys: Keyring): Promise<WebhookResealResult> {
    this.bind(tenantId);
    return resealWebhookSecrets(this.sql, tenantId, keys);
  }
}
