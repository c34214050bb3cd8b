/**
 * D1 schema: the system of record. Every tenant-owned table carries `tenant_id`, and every query
 * module filters by it (the tenant id comes from the credential, never from the request body).
 * Timestamps are unix milliseconds (integers) so they sort and compare cheaply; the API renders ISO-8601.
 * Migrations in /migrations are generated from this file by drizzle-kit (`npm run db:generate`).
 */
import { sql } from "drizzle-orm";
import { check, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export const tenants = sqliteTable(
  "tenants",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    /** active | suspended — a suspended tenant's requests get 403 (docs/api/admin.md#tenants). */
    status: text("status", { enum: ["active", "suspended"] })
      .notNull()
      .default("active"),
    createdAt: integer("created_at").notNull(),
    /** The partner the tenant belongs to (docs/api/admin.md#partners); null: none. */
    partnerId: text("partner_id").references(() => partners.id),
    /** Its ScaiKey id (`tnt_…`), which admin routes accept in place of `id`. */
    scaikeyId: text("scaikey_id"),
    slug: text("slug"),
    /** Arbitrary JSON object, set with PATCH /api/admin/tenants/{id}. */
    settings: text("settings", { mode: "json" }).$type<Record<string, unknown>>().notNull().default({}),
    updatedAt: integer("updated_at"),
    /** ScaiKey's `updated_at` of the last record applied (docs/scaikey.md): an older one is ignored. */
    scaikeyUpdatedAt: integer("scaikey_updated_at"),
    /** When a sync or webhook last saw it at ScaiKey; `sync --full` prunes what a run did not see. */
    scaikeySyncedAt: integer("scaikey_synced_at"),
  },
  (t) => [uniqueIndex("tenants_scaikey_id").on(t.scaikeyId), index("tenants_partner").on(t.partnerId)],
);

export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    name: text("name").notNull(),
    /** First 16 characters of the key (`sg_live_` + 8 hex), shown in listings; never enough to authenticate. */
    prefix: text("prefix").notNull(),
    /** SHA-256 of the whole key, hex. The key itself is shown once and never stored. */
    keyHash: text("key_hash").notNull(),
    environment: text("environment", { enum: ["live", "test"] }).notNull(),
    /** JSON array of permission names (docs/api/admin.md#permissions). */
    scopes: text("scopes", { mode: "json" }).$type<string[]>().notNull(),
    createdAt: integer("created_at").notNull(),
    lastUsedAt: integer("last_used_at"),
    expiresAt: integer("expires_at"),
    revokedAt: integer("revoked_at"),
  },
  (t) => [uniqueIndex("api_keys_key_hash").on(t.keyHash), index("api_keys_tenant").on(t.tenantId)],
);

export const senderDomains = sqliteTable(
  "sender_domains",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    domain: text("domain").notNull(),
    dkimSelector: text("dkim_selector").notNull(),
    /** base64 SubjectPublicKeyInfo, as published in the `p=` tag. */
    dkimPublicKey: text("dkim_public_key").notNull(),
    /** AES-256-GCM ciphertext of the PKCS#8 PEM private key (see edge/src/lib/secret-box.ts). */
    dkimPrivateKeyEnc: text("dkim_private_key_enc").notNull(),
    /**
     * The optional second key, for dual signing (RFC 8463: ed25519-sha256 beside rsa-sha256); all
     * four are null for an rsa-only domain. Its selector changes with every rotation, so the old
     * record can stay published while mail signed with it is in flight.
     */
    dkimEd25519Selector: text("dkim_ed25519_selector"),
    /** base64 of the raw 32-byte public key, as published in `p=` (RFC 8463 §4.2), not an SPKI. */
    dkimEd25519PublicKey: text("dkim_ed25519_public_key"),
    /** Sealed like dkim_private_key_enc, under its own AAD (`dkim-ed25519:<domain id>`). */
    dkimEd25519PrivateKeyEnc: text("dkim_ed25519_private_key_enc"),
    /**
     * When verification last found this key's record in DNS; null until then (and again after a
     * rotation or a check that no longer finds it). Mail is signed with the key only while it is set.
     */
    dkimEd25519VerifiedAt: integer("dkim_ed25519_verified_at"),
    /**
     * A DKIM rotation in progress (services/dkim-rotation.ts): the new RSA key, published beside the
     * active one; it replaces dkim_selector/dkim_public_key/dkim_private_key_enc (and signs) once a
     * verification finds its record. All four null when no rotation is pending.
     */
    dkimNextSelector: text("dkim_next_selector"),
    dkimNextPublicKey: text("dkim_next_public_key"),
    /** Sealed like dkim_private_key_enc (same AAD: it becomes that column's value at the switch). */
    dkimNextPrivateKeyEnc: text("dkim_next_private_key_enc"),
    dkimNextCreatedAt: integer("dkim_next_created_at"),
    /** Keys replaced by a rotation (public half only): still published until retire_at, then removable. */
    dkimRetiredKeys: text("dkim_retired_keys", { mode: "json" }).$type<
      { selector: string; public_key: string; switched_at: number; retire_at: number }[]
    >(),
    dmarcPolicy: text("dmarc_policy", { enum: ["none", "quarantine", "reject"] })
      .notNull()
      .default("none"),
    dmarcRuaEmail: text("dmarc_rua_email"),
    verified: integer("verified", { mode: "boolean" }).notNull().default(false),
    isActive: integer("is_active", { mode: "boolean" }).notNull().default(true),
    verifiedAt: integer("verified_at"),
    lastCheckedAt: integer("last_checked_at"),
    /** JSON array of {record, message} from the last verification. */
    lastErrors: text("last_errors", { mode: "json" }).$type<{ record: string; message: string }[]>(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("sender_domains_tenant_domain").on(t.tenantId, t.domain)],
);

export const MESSAGE_STATUSES = [
  "queued",
  "processing",
  "rendered",
  "sending",
  "sent",
  "delivered",
  "bounced",
  "failed",
  "cancelled",
  "sandbox",
] as const;
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

export interface StoredAddress {
  email: string;
  name?: string;
}

export const messages = sqliteTable(
  "messages",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    status: text("status", { enum: MESSAGE_STATUSES }).notNull(),
    mode: text("mode", { enum: ["live", "sandbox"] }).notNull(),
    apiKeyId: text("api_key_id"),
    fromEmail: text("from_email").notNull(),
    fromName: text("from_name"),
    subject: text("subject").notNull(),
    toEmails: text("to_emails", { mode: "json" }).$type<string[]>().notNull(),
    /** Full recipients and reply-to, with display names. */
    recipients: text("recipients", { mode: "json" })
      .$type<{ to: StoredAddress[]; cc: StoredAddress[]; bcc: StoredAddress[]; replyTo: StoredAddress[] }>()
      .notNull(),
    headers: text("headers", { mode: "json" }).$type<Record<string, string>>().notNull(),
    categories: text("categories", { mode: "json" }).$type<string[]>().notNull(),
    customArgs: text("custom_args", { mode: "json" }).$type<Record<string, string>>().notNull(),
    textBody: text("text_body"),
    htmlBody: text("html_body"),
    templateId: text("template_id"),
    batchId: text("batch_id"),
    /** RFC 5322 Message-ID (without <>), fixed at accept time so retries and bounces correlate. */
    messageIdHeader: text("message_id_header").notNull(),
    /** Times the hub handed this message to an origin (re-dispatches after a dropped link or lease count too). */
    dispatches: integer("dispatches").notNull().default(0),
    /** Deliveries that ended with recipients deferred; the retry schedule is indexed by this, not by dispatches. */
    deferrals: integer("deferrals").notNull().default(0),
    /** When the hub will next try a deferred message; the sweeper leaves it alone until then. */
    nextAttemptAt: integer("next_attempt_at"),
    errorMessage: text("error_message"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    deliveredAt: integer("delivered_at"),
  },
  (t) => [
    index("messages_tenant_created").on(t.tenantId, t.createdAt),
    index("messages_tenant_status").on(t.tenantId, t.status, t.createdAt),
    index("messages_tenant_from").on(t.tenantId, t.fromEmail),
  ],
);

/** One row per envelope recipient: lets `to_email` filter exactly and keeps per-recipient state. */
export const messageRecipients = sqliteTable(
  "message_recipients",
  {
    messageId: text("message_id")
      .notNull()
      .references(() => messages.id),
    tenantId: text("tenant_id").notNull(),
    email: text("email").notNull(),
    kind: text("kind", { enum: ["to", "cc", "bcc"] }).notNull(),
    /** pending | delivered | deferred | bounced | failed */
    status: text("status").notNull().default("pending"),
  },
  (t) => [
    uniqueIndex("message_recipients_pk").on(t.messageId, t.email),
    index("message_recipients_tenant_email").on(t.tenantId, t.email),
  ],
);

export const EVENT_TYPES = [
  "processed",
  "deferred",
  "delivered",
  "bounce",
  "blocked",
  "dropped",
  "open",
  "click",
  "spam_report",
  "unsubscribe",
  "group_unsubscribe",
  "group_resubscribe",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export const events = sqliteTable(
  "events",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    messageId: text("message_id").notNull(),
    eventType: text("event_type", { enum: EVENT_TYPES }).notNull(),
    recipientEmail: text("recipient_email").notNull(),
    /** Unix milliseconds when the event happened. */
    timestamp: integer("timestamp").notNull(),
    /** Which delivery attempt produced it (0 for events not tied to an attempt). */
    attempt: integer("attempt").notNull().default(0),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
  },
  (t) => [
    index("events_message").on(t.messageId, t.timestamp),
    index("events_tenant_time").on(t.tenantId, t.timestamp),
    // At-least-once results: the same (message, attempt, recipient, type) is recorded once.
    uniqueIndex("events_dedupe")
      .on(t.messageId, t.attempt, t.recipientEmail, t.eventType)
      .where(sql`attempt > 0`),
  ],
);

/**
 * Transactional templates (docs/api/sendgrid.md#templates): SendGrid's two generations, ids as
 * SendGrid makes them (`d-` + 32 hex for dynamic, a UUID for legacy). Names are unique per tenant.
 */
export const TEMPLATE_GENERATIONS = ["legacy", "dynamic"] as const;
export type TemplateGeneration = (typeof TEMPLATE_GENERATIONS)[number];

export const templates = sqliteTable(
  "templates",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    name: text("name").notNull(),
    generation: text("generation", { enum: TEMPLATE_GENERATIONS }).notNull(),
    createdAt: integer("created_at").notNull(),
    /** Moves when the template or any of its versions changes (SendGrid's `updated_at`). */
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("templates_tenant_name").on(t.tenantId, t.name),
    // The list's keyset order (newest first) within one generation filter.
    index("templates_tenant_created").on(t.tenantId, t.createdAt, t.id),
  ],
);

/**
 * A template's versions. At most one is active per template: the partial unique index makes a
 * second active row impossible, so activation (deactivate the others, then activate one, in one
 * D1 batch) can never leave two.
 */
export const templateVersions = sqliteTable(
  "template_versions",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    templateId: text("template_id")
      .notNull()
      .references(() => templates.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    subject: text("subject").notNull(),
    htmlContent: text("html_content").notNull(),
    plainContent: text("plain_content").notNull(),
    /** When true, plain_content was generated from html_content, and is again on every change of it. */
    generatePlainContent: integer("generate_plain_content", { mode: "boolean" }).notNull(),
    preheader: text("preheader"),
    editor: text("editor", { enum: ["code", "design"] }).notNull(),
    testData: text("test_data"),
    /**
     * SHA-256 (hex) of the version's content snapshot in R2 (`templates/<tenant>/<sha256>`), which
     * sends name by reference; null until written (versions saved before snapshots existed get it at
     * their first send). The cron keeps a snapshot while any version names it (services/template-snapshots.ts).
     */
    snapshotSha256: text("snapshot_sha256"),
    active: integer("active").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    index("template_versions_template").on(t.templateId, t.createdAt),
    uniqueIndex("template_versions_template_name").on(t.templateId, t.name),
    uniqueIndex("template_versions_one_active")
      .on(t.templateId)
      .where(sql`active = 1`),
  ],
);

/**
 * Batches (docs/api/sendgrid.md#scheduling-and-batches): ids made by POST /v3/mail/batch, which a send
 * names in `batch_id`, and the batch's scheduled-send state (`/v3/user/scheduled_sends`): null, or
 * `pause` (its messages are held in the hub until the state is removed) or `cancel` (never sent).
 * An id is only ever looked up with its tenant, so another tenant's batch is "invalid" like a made-up one.
 */
export const SCHEDULED_SEND_STATUSES = ["pause", "cancel"] as const;
export type ScheduledSendStatus = (typeof SCHEDULED_SEND_STATUSES)[number];

export const batches = sqliteTable(
  "batches",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    scheduledStatus: text("scheduled_status", { enum: SCHEDULED_SEND_STATUSES }),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  // The list and the limit of /v3/user/scheduled_sends: the tenant's batches that have a state.
  (t) => [index("batches_tenant_status").on(t.tenantId, t.scheduledStatus)],
);

/**
 * Suppressions (docs/api/sendgrid.md#suppressions): one store per tenant for SendGrid's five lists.
 * Addresses are stored lower-cased; `(tenant_id, email, list)` is unique, so the check before dispatch
 * is one indexed probe per recipient. `created_at` is unix milliseconds (the API shows seconds).
 * Rows are also written by the `events_suppress_*` triggers of migrations/0006_suppressions.sql
 * (a bounce, block, spam report or unsubscribe event adds one), which drizzle cannot express.
 */
export const SUPPRESSION_LISTS = [
  "bounces",
  "blocks",
  "invalid_emails",
  "spam_reports",
  "unsubscribes",
] as const;
export type SuppressionList = (typeof SUPPRESSION_LISTS)[number];

export const suppressions = sqliteTable(
  "suppressions",
  {
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    email: text("email").notNull(),
    list: text("list", { enum: SUPPRESSION_LISTS }).notNull(),
    createdAt: integer("created_at").notNull(),
    /** bounces, blocks, invalid_emails: the SMTP reply or the reason given when added. */
    reason: text("reason"),
    /** bounces and blocks: the enhanced status code, e.g. "5.1.1". */
    status: text("status"),
    /** bounces: hard | soft | block (as added; only hard ones come from delivery automatically). */
    bounceType: text("bounce_type"),
    /** spam_reports: the IP the report named, when known. */
    ip: text("ip"),
  },
  (t) => [
    uniqueIndex("suppressions_pk").on(t.tenantId, t.email, t.list),
    index("suppressions_tenant_list_created").on(t.tenantId, t.list, t.createdAt),
  ],
);

/** Unsubscribe groups (SendGrid's ASM): integer ids as SendGrid has them, names unique per tenant. */
export const asmGroups = sqliteTable(
  "asm_groups",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    isDefault: integer("is_default", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("asm_groups_tenant_name").on(t.tenantId, t.name)],
);

/** Per-group unsubscribes: an address here is dropped for mail sent with that `asm.group_id`. */
export const asmGroupSuppressions = sqliteTable(
  "asm_group_suppressions",
  {
    tenantId: text("tenant_id").notNull(),
    groupId: integer("group_id")
      .notNull()
      .references(() => asmGroups.id),
    email: text("email").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [
    uniqueIndex("asm_group_suppressions_pk").on(t.tenantId, t.email, t.groupId),
    index("asm_group_suppressions_group_created").on(t.groupId, t.createdAt),
  ],
);

/**
 * Stats counters (docs/api/sendgrid.md#stats): one row per tenant, category ('' for all mail), UTC
 * day (YYYY-MM-DD) and SendGrid metric. Written only by the triggers of migrations/0007_stats.sql,
 * which drizzle cannot express: `events_stats_count` (every inserted event) and
 * `events_stats_requests` (every live message). A replayed insert that conflicts inserts no row and
 * so fires no trigger: each event counts once. POST /v3/stats/rebuild recomputes a range through the
 * `events_stats_metrics` view, which maps an event to its metrics as the trigger does.
 */
export const statsDaily = sqliteTable(
  "stats_daily",
  {
    tenantId: text("tenant_id").notNull(),
    category: text("category").notNull(),
    day: text("day").notNull(),
    metric: text("metric").notNull(),
    count: integer("count").notNull().default(0),
  },
  (t) => [uniqueIndex("stats_daily_pk").on(t.tenantId, t.category, t.day, t.metric)],
);

/**
 * A tenant's tracking defaults (docs/api/tracking.md#tenant-defaults), as set with
 * PUT /api/admin/tenants/{id}/tracking; no row: the documented defaults. `settings` holds only the
 * keys that were set (shared/tracking/settings.ts fills in the rest).
 */
export const tenantTrackingSettings = sqliteTable("tenant_tracking_settings", {
  tenantId: text("tenant_id")
    .primaryKey()
    .references(() => tenants.id),
  settings: text("settings", { mode: "json" }).$type<Record<string, boolean>>().notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/**
 * A tenant's own rate limits (services/rate-limit-table.ts): row name → requests per window, set by
 * the operator (PUT /api/admin/tenants/{id}/rate_limits, docs/api/admin.md#rate-limits).
 */
export const tenantRateLimits = sqliteTable("tenant_rate_limits", {
  tenantId: text("tenant_id")
    .primaryKey()
    .references(() => tenants.id),
  limits: text("limits", { mode: "json" }).$type<Record<string, number>>().notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/**
 * The image library (docs/api/images.md): one row per uploaded image; the bytes are in R2 under
 * `r2_key` and its thumbnail under `thumbnail_key` (a copy of the original when that already fits).
 * `content_type`, `width` and `height` come from the file's bytes, never from the request. A delete
 * removes the objects and sets `deleted_at`, so `/i/{id}` can answer 410 instead of 404.
 */
export const images = sqliteTable(
  "images",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    filename: text("filename").notNull(),
    originalFilename: text("original_filename").notNull(),
    contentType: text("content_type").notNull(),
    size: integer("size").notNull(),
    width: integer("width").notNull(),
    height: integer("height").notNull(),
    /** SHA-256 of the bytes, hex: the ETag of /i/{id}. */
    sha256: text("sha256").notNull(),
    r2Key: text("r2_key").notNull(),
    thumbnailKey: text("thumbnail_key"),
    altText: text("alt_text"),
    folder: text("folder"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    deletedAt: integer("deleted_at"),
  },
  (t) => [
    index("images_tenant_created").on(t.tenantId, t.deletedAt, t.createdAt),
    index("images_tenant_folder").on(t.tenantId, t.folder),
  ],
);

/**
 * Identity (docs/api/admin.md#partners … #group-mappings): partners group tenants; roles are the
 * default ones (tenant_id null, seeded by migration 0012, read-only) or a tenant's own; users are a
 * tenant's mirror of ScaiKey users (one row per tenant a person works in, keyed by the JWT `sub`);
 * group mappings turn a ScaiKey group named in a JWT's `groups` claim into roles of the tenant.
 */
export const partners = sqliteTable(
  "partners",
  {
    id: text("id").primaryKey(),
    scaikeyId: text("scaikey_id"),
    name: text("name").notNull(),
    slug: text("slug").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    scaikeyUpdatedAt: integer("scaikey_updated_at"),
    scaikeySyncedAt: integer("scaikey_synced_at"),
  },
  (t) => [uniqueIndex("partners_slug").on(t.slug), uniqueIndex("partners_scaikey_id").on(t.scaikeyId)],
);

export const roles = sqliteTable(
  "roles",
  {
    id: text("id").primaryKey(),
    /** null: a default role, shared by every tenant and read-only. */
    tenantId: text("tenant_id").references(() => tenants.id),
    name: text("name").notNull(),
    description: text("description"),
    isDefault: integer("is_default", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [uniqueIndex("roles_tenant_name").on(t.tenantId, t.name)],
);

export const rolePermissions = sqliteTable(
  "role_permissions",
  {
    roleId: text("role_id")
      .notNull()
      .references(() => roles.id, { onDelete: "cascade" }),
    permission: text("permission").notNull(),
  },
  (t) => [primaryKey({ columns: [t.roleId, t.permission] })],
);

export const users = sqliteTable(
  "users",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    /** The ScaiKey user id: the `sub` of the user's JWTs. */
    scaikeyId: text("scaikey_id").notNull(),
    email: text("email"),
    firstName: text("first_name"),
    lastName: text("last_name"),
    displayName: text("display_name"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    scaikeyUpdatedAt: integer("scaikey_updated_at"),
    scaikeySyncedAt: integer("scaikey_synced_at"),
  },
  (t) => [uniqueIndex("users_tenant_scaikey").on(t.tenantId, t.scaikeyId)],
);

/**
 * The ScaiKey groups a user is in (docs/scaikey.md), from sign-in, the sync webhook and `sync --full`;
 * the tenant's group mappings turn them into roles, as they do a JWT's `groups` claim.
 */
export const userGroups = sqliteTable(
  "user_groups",
  {
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    groupId: text("group_id").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.groupId] }),
    index("user_groups_tenant_group").on(t.tenantId, t.groupId),
  ],
);

/** ScaiKey sync-webhook event ids already applied (docs/scaikey.md#webhook): a replay changes nothing. */
export const scaikeyEvents = sqliteTable(
  "scaikey_events",
  {
    id: text("id").primaryKey(),
    receivedAt: integer("received_at").notNull(),
  },
  (t) => [index("scaikey_events_received").on(t.receivedAt)],
);

/**
 * What `scaisend register` obtained from ScaiKey (docs/scaikey.md#register): one row, id "default".
 * `client_secret` and `webhook_secret` are sealed with SECRETS_KEY (lib/secret-box.ts).
 */
export const scaikeyRegistration = sqliteTable("scaikey_registration", {
  id: text("id").primaryKey(),
  issuer: text("issuer").notNull(),
  clientId: text("client_id"),
  clientSecret: text("client_secret"),
  redirectUri: text("redirect_uri"),
  webhookId: text("webhook_id"),
  webhookUrl: text("webhook_url"),
  webhookSecret: text("webhook_secret"),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

export const userRoles = sqliteTable(
  "user_roles",
  {
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    roleId: text("role_id")
      .notNull()
      .references(() => roles.id, { onDelete: "cascade" }),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.roleId] }), index("user_roles_tenant").on(t.tenantId, t.userId)],
);

export const groupMappings = sqliteTable(
  "group_mappings",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    /** A ScaiKey group id or name, as the JWT's `groups` claim carries it. */
    groupId: text("group_id").notNull(),
    roleId: text("role_id")
      .notNull()
      .references(() => roles.id, { onDelete: "cascade" }),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("group_mappings_tenant_group_role").on(t.tenantId, t.groupId, t.roleId)],
);

/**
 * SenderKit's /v1 messages (docs/api/senderkit.md#messages): what SenderKit's Message has that the
 * `messages` row has not. A live email's row rides in its hub shard's catalog rows and reaches D1 with
 * its `messages` row, whose status it reads (`status` null); a test-mode message has no `messages`
 * row: its hub shard synthesizes its lifecycle and writes `status` and `timeline` here.
 */
export const skMessages = sqliteTable(
  "sk_messages",
  {
    /** The public id `msg_…` (= messages.id for a live email). */
    id: text("id").primaryKey(),
    /** SenderKit's Message.id (a UUID). */
    uuid: text("uuid").notNull(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    livemode: integer("livemode", { mode: "boolean" }).notNull(),
    channel: text("channel", { enum: ["email", "sms", "push", "web-push"] }).notNull(),
    recipient: text("recipient").notNull(),
    templateSlug: text("template_slug"),
    pinnedVersion: integer("pinned_version"),
    vars: text("vars", { mode: "json" }).$type<Record<string, unknown>>().notNull().default({}),
    metadata: text("metadata", { mode: "json" })
      .$type<Record<string, string | number | boolean>>()
      .notNull()
      .default({}),
    fromOverride: text("from_override"),
    interpolate: integer("interpolate", { mode: "boolean" }).notNull().default(false),
    idempotencyKey: text("idempotency_key"),
    scheduledAt: integer("scheduled_at"),
    /** SenderKit status of a message without a `messages` row; null: mapped from messages.status. */
    status: text("status"),
    error: text("error"),
    timeline: text("timeline", { mode: "json" })
      .$type<{ t: string; e: string; [k: string]: unknown }[]>()
      .notNull()
      .default([]),
    provider: text("provider"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("sk_messages_uuid").on(t.uuid),
    index("sk_messages_tenant_mode_created").on(t.tenantId, t.livemode, t.createdAt, t.id),
  ],
);

/**
 * SenderKit templates (docs/api/senderkit.md#templates): a slug per tenant (stored lowercase), one
 * channel fixed at creation, immutable numbered versions. `current_version_id` is the published
 * version (null: draft); `archived_at` set: archived (every send is 422). `latest_version` is the
 * highest version number, bumped in the same D1 batch that inserts the version.
 */
export const skTemplates = sqliteTable(
  "sk_templates",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    slug: text("slug").notNull(),
    channel: text("channel", { enum: ["email", "sms", "push", "web-push"] }).notNull(),
    description: text("description"),
    currentVersionId: text("current_version_id"),
    /** When the current version became current (publish or rollback). */
    publishedAt: integer("published_at"),
    latestVersion: integer("latest_version").notNull().default(0),
    archivedAt: integer("archived_at"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    /** The provider connection its live sends use instead of the channel's default (docs/channels.md#provider-connections). */
    providerConnectionId: text("provider_connection_id").references(() => providerConnections.id),
  },
  (t) => [uniqueIndex("sk_templates_tenant_slug").on(t.tenantId, t.slug)],
);

/**
 * A tenant's provider connections for SMS, mobile push and web push (docs/channels.md#provider-connections):
 * one default per channel (a partial unique index), any number of others a template may name. The
 * credentials are sealed with SECRETS_KEY (lib/secret-box.ts, AAD `provider-connection:<id>`);
 * `settings` holds the fields that are not secret and `hints` what the API shows of the secrets.
 */
export const providerConnections = sqliteTable(
  "provider_connections",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    channel: text("channel", { enum: ["sms", "push", "web-push"] }).notNull(),
    provider: text("provider", { enum: ["twilio", "vonage", "fcm", "apns", "expo", "vapid"] }).notNull(),
    name: text("name").notNull(),
    isDefault: integer("is_default", { mode: "boolean" }).notNull().default(false),
    settings: text("settings", { mode: "json" }).$type<Record<string, string>>().notNull().default({}),
    hints: text("hints", { mode: "json" }).$type<Record<string, string>>().notNull().default({}),
    credentialsSealed: text("credentials_sealed").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("provider_connections_tenant_name").on(t.tenantId, t.name),
    uniqueIndex("provider_connections_default")
      .on(t.tenantId, t.channel)
      .where(sql`"provider_connections"."is_default" = 1`),
  ],
);

/** A SenderKit template version: content and variables never change (a trigger refuses it). */
export const skTemplateVersions = sqliteTable(
  "sk_template_versions",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    templateId: text("template_id")
      .notNull()
      .references(() => skTemplates.id),
    versionNumber: integer("version_number").notNull(),
    /** The channel's fields as JSON (edge/src/services/senderkit/template-content.ts). */
    content: text("content", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    variables: text("variables", { mode: "json" }).$type<Record<string, unknown>[]>().notNull().default([]),
    firstPublishedAt: integer("first_published_at"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("sk_template_versions_number").on(t.templateId, t.versionNumber)],
);

/** A tenant's SenderKit monthly quota, set by the operator (docs/api/senderkit.md#quota); 0: no limit. */
export const skQuotas = sqliteTable("sk_quotas", {
  tenantId: text("tenant_id")
    .primaryKey()
    .references(() => tenants.id),
  monthlyLimit: integer("monthly_limit").notNull(),
  /** Sends keep working past the limit up to this many percent more. */
  gracePercent: integer("grace_percent").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** Live /v1 sends counted per tenant and UTC calendar month (`YYYY-MM`). */
export const skUsage = sqliteTable(
  "sk_usage",
  {
    tenantId: text("tenant_id").notNull(),
    month: text("month").notNull(),
    count: integer("count").notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.month] })],
);

/**
 * Operator-created sign-ins to the web dashboard at /app (docs/dashboard.md). `email` is unique across
 * the install, so the sign-in form needs no tenant; `roles` names roles of the tenant (default or its
 * own), resolved to permissions through the same RBAC as the API (services/access.ts).
 */
export const dashboardLogins = sqliteTable(
  "dashboard_logins",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    /** Lower-cased. */
    email: text("email").notNull(),
    /** PBKDF2-SHA256 of the password (services/dashboard-passwords.ts), base64; salt per login. */
    passwordHash: text("password_hash").notNull(),
    passwordSalt: text("password_salt").notNull(),
    passwordIterations: integer("password_iterations").notNull(),
    roles: text("roles", { mode: "json" }).$type<string[]>().notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [uniqueIndex("dashboard_logins_email").on(t.email), index("dashboard_logins_tenant").on(t.tenantId)],
);

/**
 * Dashboard sessions: the cookie holds a random id, D1 its SHA-256 (a copy of the table opens no session).
 * A session is an operator-created login's or, signed in through ScaiKey, a mirrored user's: exactly one
 * of the two (migration 0018); deleting either ends its sessions.
 */
export const dashboardSessions = sqliteTable(
  "dashboard_sessions",
  {
    idHash: text("id_hash").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    loginId: text("login_id").references(() => dashboardLogins.id, { onDelete: "cascade" }),
    userId: text("user_id").references(() => users.id, { onDelete: "cascade" }),
    /** The per-session token every form carries (docs/dashboard.md#csrf). */
    csrfToken: text("csrf_token").notNull(),
    createdAt: integer("created_at").notNull(),
    lastSeenAt: integer("last_seen_at").notNull(),
  },
  (t) => [
    index("dashboard_sessions_login").on(t.loginId),
    index("dashboard_sessions_user").on(t.userId),
    index("dashboard_sessions_last_seen").on(t.lastSeenAt),
    index("dashboard_sessions_created").on(t.createdAt),
    check("dashboard_sessions_one_owner", sql`(${t.loginId} IS NULL) <> (${t.userId} IS NULL)`),
  ],
);

/** Failed sign-ins per (client address, email), keyed by their SHA-256: the throttle's window. */
export const dashboardLoginFailures = sqliteTable("dashboard_login_failures", {
  key: text("key").primaryKey(),
  failures: integer("failures").notNull(),
  firstFailureAt: integer("first_failure_at").notNull(),
});
