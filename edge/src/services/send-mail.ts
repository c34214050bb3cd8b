/**
 * The send use case (docs/architecture.md, "The accept path"), as named steps:
 *   decide mode → refuse what this deployment does not honour yet (`notSupportedErrors`) → expand
 *   personalizations one at a time, each checked against the size limits (`draftsWithinLimits`) →
 *   a `template_id` must name an active template of the tenant (`requireTemplate`; its jobs name the
 *   version's snapshot in R2, docs/templates.md#where-rendering-happens) →
 *   check the sender domains (live only) → build the rows, each checked to fit one link frame →
 *   live: ONE call to the request's hub shard, which accepts every message (outbox entry, catalog
 *   rows, `processed` events, the Idempotency-Key) in one transaction and later writes the catalog
 *   rows to D1 → 202. Nothing is written until every check passed, and a request's messages are
 *   accepted all together or not at all.
 * Validation has already happened (the route ran validateMailSend). Sandbox goes through the same
 * checks and stops before the hub: one D1 batch (status `sandbox`, no events, nothing queued), so it
 * is one round trip too and its rows are listed at once (docs/api/sendgrid.md#sandbox-and-live).
 * Live ids name the shard that accepted them (edge/src/lib/shards.ts); sandbox ids name none.
 */
import { AppError } from "../../../shared/errors.ts";
import { newId } from "../../../shared/ids.ts";
import { FRAME_BUDGET_BYTES } from "../../../shared/link/protocol.ts";
import {
  MAX_BODY_BYTES,
  MAX_HEADER_VALUE_BYTES,
  MAX_HEADERS_BYTES,
  MAX_MAIL_SEND_BYTES,
  MAX_SUBJECT_BYTES,
  fieldError,
  isDynamicTemplateId,
  notSupportedErrors,
  unknownIpPoolError,
  unknownTemplateError,
  type MailSend,
  type SendGridFieldError,
} from "../../../shared/sendgrid/mail-send.ts";
import { utf8ByteLength } from "../../../shared/utf8.ts";
import {
  ExpansionLimitError,
  expandPersonalization,
  type MessageDraft,
} from "../../../shared/sendgrid/personalize.ts";
import type { Principal } from "../context.ts";
import type { Db } from "../db/client.ts";
import type { DomainRow } from "../db/domains.ts";
import { cachedDomainsByNames } from "./catalog-cache.ts";
import {
  insertMessagesStatements,
  type NewEvent,
  type NewMessage,
  type NewRecipient,
} from "../db/messages.ts";
import { newMessageId, type ShardRef } from "../lib/shards.ts";
import { bodyPlacement, messageBlobs, offloadedBytes, withBlobRefs } from "./message-blobs.ts";
import { snapshotRefFor, type SnapshotVersion } from "./template-snapshots.ts";
import { activeTemplateHead, activeTemplateVersion } from "./templates-cache.ts";
import { checkScheduling, notBeforeOf } from "./scheduling.ts";
import type { JobTemplate, TemplateSnapshotRef } from "../../../shared/link/protocol.ts";
import type { AcceptRequest, AcceptResult, OutboxEntry } from "../objects/origin-hub.ts";
import { mergeTracking } from "../../../shared/tracking/settings.ts";
import { trackingDefaultsOf } from "./tracking-settings.ts";
import {
  buildOutboxEntry,
  catalogRowsOf,
  domainOf,
  envelopeRecipients,
  type AcceptedMessage,
} from "./outbox-entry.ts";
import { checkAsm, suppressionPolicyOf } from "./suppression-policy.ts";

export { MAX_BODY_BYTES };

/**
 * D1 refuses a row over 2,000,000 bytes (SQLITE_TOOBIG, developers.cloudflare.com/d1/platform/limits).
 * What the send writes into one `messages` row stays under this, leaving room for what delivery
 * writes into the same row later (error_message, counters).
 */
export const MAX_MESSAGE_ROW_BYTES = 1_900_000;

/**
 * Every personalization stores its own copy of the content, and one D1 batch carries the whole
 * request (serialized as one string), so what a request stores is capped like the request itself.
 */
export const MAX_REQUEST_STORED_BYTES = MAX_MAIL_SEND_BYTES;

/**
 * A message travels to the origin as one job inside one link frame (docs/link-protocol.md); the
 * hub fails a job too large for any frame. Refuse it here instead, before the 202. The reserve
 * covers what the job adds to the outbox entry measured here: its id, attempt and the opened DKIM key.
 */
export const MAX_JOB_BYTES = FRAME_BUDGET_BYTES - 16 * 1024;

export interface SendDeps {
  db: Db;
  /** The hub shard this request's live messages go to (chosen per request) and its accept call. */
  hub: { shard: ShardRef; accept: (req: AcceptRequest) => Promise<AcceptResult> };
  now: () => number;
  log: (msg: string, extra?: Record<string, unknown>) => void;
  /** R2 (BLOBS): live attachments and bodies too large for a link frame (services/blobs.ts). */
  blobs: Pick<R2Bucket, "put">;
}

export interface SendOptions {
  /** The request's Idempotency-Key and a SHA-256 (hex) of its body (live sends only). */
  idempotency?: { key: string; bodyHash: string };
  /** Called with each live message before it goes to the hub (the /v1 surface adds its row, docs/api/senderkit.md). */
  decorate?: (m: AcceptedMessage) => void;
}

export interface SendResult {
  messageIds: string[];
  mode: "live" | "sandbox";
  /** True when an Idempotency-Key retry got the ids of the request that first used the key. */
  replayed: boolean;
}

type KeyPrincipal = Exclude<Principal, { kind: "operator" }>;

export function sendMode(principal: KeyPrincipal, mail: MailSend): "live" | "sandbox" {
  // A test key can never send live; the body flag can only make a live key safer (sandbox-vs-live table).
  if (principal.environment === "test") return "sandbox";
  return mail.mail_settings?.sandbox_mode?.enable === true ? "sandbox" : "live";
}

export async function sendMail(
  deps: SendDeps,
  principal: KeyPrincipal,
  mail: MailSend,
  opts: SendOptions = {},
): Promise<SendResult> {
  const mode = sendMode(principal, mail);
  const unsupported = notSupportedErrors(mail, deps.now());
  if (unsupported.length > 0) {
    throw new AppError("invalid_request", "Not supported by this deployment", { fields: unsupported });
  }
  // send_at and batch_id: mail.schedule, and a batch of this tenant (services/scheduling.ts).
  await checkScheduling(deps.db, principal, mail, deps.now());
  // asm: groups of this tenant (services/suppression-policy.ts).
  await checkAsm(deps.db, principal.tenantId, mail);
  const sizes = new BodySizes();
  const drafts = draftsWithinLimits(mail, sizes);
  const template =
    mail.template_id !== undefined ? await requireTemplate(deps.db, principal, mail.template_id) : null;
  const domains =
    mode === "live" ? await requireVerifiedDomains(deps.db, principal.tenantId, drafts) : new Map();
  // The tenant's tracking defaults with the request's settings merged over them (docs/api/tracking.md#settings).
  const tracking =
    mode === "live" ? mergeTracking(await trackingDefaultsOf(deps.db, principal.tenantId), mail) : null;

  const now = deps.now();
  // Hashed and checked in both modes, so sandbox answers as live would; only live stores them.
  const blobs = await messageBlobs(principal.tenantId, mail, now);
  const rows: NewMessage[] = [];
  const recipients: NewRecipient[] = [];
  const accepted: AcceptedMessage[] = [];
  for (const draft of drafts) {
    const id = mode === "live" ? newMessageId(deps.hub.shard, now) : newId("msg", now);
    const placement = sizes.placement(draft);
    const row = messageRow(id, principal, mode, draft, now, placement);
    if (template) {
      row.templateId = template.version.templateId;
      // The catalog shows the template's subject until the origin renders the real one.
      if (draft.subject === undefined) row.subject = template.subject;
    }
    // Built once: measured here against the link's frame budget, and handed to the hub as it is.
    const entry = buildOutboxEntry(
      row as Parameters<typeof buildOutboxEntry>[0],
      mode === "live" ? domains.get(domainOf(row.fromEmail)) : undefined,
    );
    await withBlobRefs(entry, blobs, draft, placement);
    if (template) {
      // The job's own subject is only the fallback for a template whose subject renders empty.
      entry.message.subject = draft.subject ?? "";
      entry.message.template = jobTemplate(template, mail, draft);
    }
    // Content types besides text and HTML, each a part of its own at the origin (shared/sendgrid/content-types.ts).
    if (draft.otherContent.length > 0) entry.message.alternatives = draft.otherContent;
    // The hub refuses a pool no origin announced (services/ip-pools.ts); a sandbox send names it to no one.
    if (mail.ip_pool_name !== undefined) entry.ipPool = mail.ip_pool_name;
    if (tracking) entry.message.tracking = tracking;
    // The hub holds the message until its send_at, and pauses or cancels it with its batch.
    entry.notBefore = notBeforeOf(draft.sendAt, now);
    if (mail.batch_id !== undefined) entry.batchId = row.batchId = mail.batch_id;
    // Its unsubscribe group and bypass_* settings, for the check before dispatch (services/suppression-check.ts).
    Object.assign(entry, suppressionPolicyOf(mail));
    checkJobSize(entry, draft.personalizationIndex);
    rows.push(row);
    const own: NewRecipient[] = [];
    for (const kind of ["to", "cc", "bcc"] as const) {
      for (const a of draft[kind]) {
        own.push({ messageId: id, tenantId: principal.tenantId, email: a.email.toLowerCase(), kind });
      }
    }
    recipients.push(...own);
    if (mode === "live") {
      const events: NewEvent[] = [];
      for (const email of envelopeRecipients(row)) {
        events.push({
          id: newId("evt", now),
          tenantId: principal.tenantId,
          messageId: id,
          eventType: "processed",
          recipientEmail: email.toLowerCase(),
          timestamp: now,
          attempt: 0,
          metadata: {},
        });
      }
      const message = { entry, catalog: catalogRowsOf(row, own, events) };
      opts.decorate?.(message);
      accepted.push(message);
    }
  }

  if (mode === "sandbox") {
    // Sandbox stores nothing in R2: the blobs were only measured.
    await deps.db.$client.batch(insertMessagesStatements(deps.db.$client, rows, recipients, []));
    return { messageIds: rows.map((r) => r.id), mode, replayed: false };
  }

  // Every check passed: the request's blobs go to R2 (one put per distinct blob), then the hub.
  await Promise.all([blobs.store.storeAll(deps.blobs), template?.store?.(deps.blobs)]);
  // The one round trip of a live send. If it fails, nothing was accepted (one transaction) and the
  // error answers the request: the client may retry, with its Idempotency-Key to be safe.
  const result = await deps.hub.accept({
    tenantId: principal.tenantId,
    messages: accepted,
    ...(opts.idempotency ? { idempotency: opts.idempotency } : {}),
  });
  if (!result.ok && result.reason === "unknown_ip_pool") {
    throw new AppError("invalid_request", "Unknown IP pool", { fields: [unknownIpPoolError(result.ipPool)] });
  }
  if (!result.ok) {
    throw new AppError("unprocessable", "Idempotency-Key reused", {
      fields: [
        {
          message:
            "This Idempotency-Key was already used in the last 24 hours with a different request body; send the same body to get the original response, or use a new key for a new request.",
          field: "Idempotency-Key",
          help: null,
        },
      ],
    });
  }
  return { messageIds: result.messageIds, mode, replayed: result.replayed };
}

interface SendTemplate {
  version: Pick<SnapshotVersion, "templateId" | "versionId" | "generation">;
  /** The version's subject as stored (unrendered): the catalog's subject when the send has none. */
  subject: string;
  ref: TemplateSnapshotRef;
  store?: ((bucket: Pick<R2Bucket, "put">) => Promise<void>) | undefined;
}

/**
 * The tenant's template named by `template_id`, with an active version of the generation its id
 * says (docs/templates.md#where-rendering-happens), else SendGrid's 400. A cached look-up: a warm
 * isolate answers without a round trip, sandbox and live alike.
 */
async function requireTemplate(db: Db, principal: KeyPrincipal, templateId: string): Promise<SendTemplate> {
  const unknown = () =>
    new AppError("invalid_request", "Unknown template", { fields: [unknownTemplateError(templateId)] });
  const head = await activeTemplateHead(db, principal.tenantId, templateId);
  if (!head || (head.generation === "dynamic") !== isDynamicTemplateId(templateId)) throw unknown();
  const found = await snapshotRefFor(db, principal.tenantId, head, () =>
    head.content
      ? Promise.resolve({ ...head, ...head.content })
      : activeTemplateVersion(db, principal.tenantId, templateId),
  );
  if (!found) throw unknown();
  return found;
}

/** What one personalization's job needs to render: the snapshot by reference and its own data. */
function jobTemplate(t: SendTemplate, mail: MailSend, d: MessageDraft): JobTemplate {
  const v = t.version;
  const out: JobTemplate = {
    templateId: v.templateId,
    versionId: v.versionId,
    generation: v.generation,
    snapshot: t.ref,
  };
  if (v.generation === "dynamic") {
    if (d.dynamicTemplateData !== undefined) out.data = d.dynamicTemplateData;
    return out;
  }
  const substitutions = mail.personalizations[d.personalizationIndex]?.substitutions;
  if (substitutions && Object.keys(substitutions).length > 0) out.substitutions = substitutions;
  if (mail.sections && Object.keys(mail.sections).length > 0) out.sections = mail.sections;
  return out;
}

function messageRow(
  id: string,
  principal: KeyPrincipal,
  mode: "live" | "sandbox",
  d: MessageDraft,
  now: number,
  placement: { text: boolean; html: boolean } = { text: true, html: true },
): NewMessage & { recipients: NonNullable<NewMessage["recipients"]> } {
  return {
    id,
    tenantId: principal.tenantId,
    status: mode === "live" ? "queued" : "sandbox",
    mode,
    apiKeyId: principal.kind === "api_key" ? principal.keyId : null,
    fromEmail: d.from.email.toLowerCase(),
    fromName: d.from.name ?? null,
    subject: d.subject ?? "",
    toEmails: d.to.map((a) => a.email),
    recipients: { to: d.to, cc: d.cc, bcc: d.bcc, replyTo: d.replyTo },
    headers: d.headers,
    categories: d.categories,
    customArgs: d.customArgs,
    // A body that travels by reference (R2) is not kept in the catalog row (docs/api/sendgrid.md#attachments).
    textBody: placement.text ? (d.text ?? null) : null,
    htmlBody: placement.html ? (d.html ?? null) : null,
    templateId: null,
    batchId: null,
    // The Message-ID's right-hand side is the sender's domain, as receivers expect it to align.
    messageIdHeader: `${id.slice(4).toLowerCase()}@${domainOf(d.from.email)}`,
    dispatches: 0,
    deferrals: 0,
    createdAt: now,
    updatedAt: now,
  };
}

const jsonBytes = (v: unknown): number => utf8ByteLength(JSON.stringify(v));

/**
 * One request's body measures. Its personalizations usually share their content (the very same
 * strings), so a 1,000-personalization send measures the body once, not once per message and check.
 * Made per request: nothing of a request's content outlives it in isolate memory.
 */
class BodySizes {
  private last = { s: "", bytes: 0 };
  private placed: {
    text: string | undefined;
    html: string | undefined;
    at: { text: boolean; html: boolean };
  } | null = null;

  /** UTF-8 bytes of a body. */
  bytes(s: string | undefined): number {
    if (s === undefined || s === "") return 0;
    if (s !== this.last.s) this.last = { s, bytes: utf8ByteLength(s) };
    return this.last.bytes;
  }

  /** Where the draft's bodies go (message-blobs.ts bodyPlacement). */
  placement(d: MessageDraft): { text: boolean; html: boolean } {
    const p = this.placed;
    if (p && p.text === d.text && p.html === d.html) return { ...p.at };
    this.placed = { text: d.text, html: d.html, at: bodyPlacement(d) };
    return { ...this.placed.at };
  }
}

/** Bytes of the `messages` columns that grow with the request, as D1 stores them (JSON columns as JSON). */
function storedBytes(d: MessageDraft, sizes: BodySizes): number {
  const inline = sizes.placement(d);
  const fixed = 1024; // ids, tenant, status, mode, timestamps, Message-ID, SQLite record header
  return (
    fixed +
    utf8ByteLength(d.from.email) +
    utf8ByteLength(d.from.name ?? "") +
    utf8ByteLength(d.subject ?? "") +
    jsonBytes(d.to.map((a) => a.email)) +
    jsonBytes({ to: d.to, cc: d.cc, bcc: d.bcc, replyTo: d.replyTo }) +
    jsonBytes(d.headers) +
    jsonBytes(d.categories) +
    jsonBytes(d.customArgs) +
    (inline.text ? sizes.bytes(d.text) : 0) +
    (inline.html ? sizes.bytes(d.html) : 0)
  );
}

function tooLarge(status: "invalid_request" | "payload_too_large", error: SendGridFieldError): AppError {
  return new AppError(status, "Request too large", { fields: [error] });
}

/**
 * Expands one personalization at a time and checks each draft before the next is built: the
 * field limits again (substitutions can lengthen a field that passed validation), the body
 * limit, the D1 row limit, and what the whole request stores (rows, and bodies moved to R2).
 * Substitution stops as soon as a field outgrows its limit, so no oversized string is ever built.
 */
function draftsWithinLimits(mail: MailSend, sizes: BodySizes): MessageDraft[] {
  const limits = {
    subject: MAX_SUBJECT_BYTES,
    headerValue: MAX_HEADER_VALUE_BYTES,
    content: MAX_BODY_BYTES,
  };
  const shared = { offloaded: false };
  const drafts: MessageDraft[] = [];
  let requestBytes = 0;
  for (let i = 0; i < mail.personalizations.length; i++) {
    let d: MessageDraft;
    try {
      d = expandPersonalization(mail, i, limits);
    } catch (err) {
      if (err instanceof ExpansionLimitError) throw expansionError(err);
      throw err;
    }
    checkDraft(d, sizes);
    const bytes = storedBytes(d, sizes);
    requestBytes += offloadedBytes(d, shared);
    if (bytes > MAX_MESSAGE_ROW_BYTES) {
      throw tooLarge(
        "payload_too_large",
        fieldError(
          ["personalizations", i],
          `The message of personalization ${i} would take ${bytes} bytes to store; this deployment stores at most ${MAX_MESSAGE_ROW_BYTES} bytes per message (addresses, subject, headers, custom_args, categories and content together).`,
        ),
      );
    }
    requestBytes += bytes;
    if (requestBytes > MAX_REQUEST_STORED_BYTES) {
      throw tooLarge(
        "payload_too_large",
        fieldError(
          ["personalizations"],
          `The messages of this request would take more than ${MAX_REQUEST_STORED_BYTES} bytes to store (each personalization whose substitutions change its content stores its own copy); send fewer personalizations per request.`,
        ),
      );
    }
    drafts.push(d);
  }
  return drafts;
}

function expansionError(err: ExpansionLimitError): AppError {
  const i = err.personalizationIndex;
  if (err.field === "content") return bodyTooLarge(i, null);
  if (err.field === "substitutions") {
    return tooLarge(
      "invalid_request",
      fieldError(
        ["personalizations", i, "substitutions"],
        `The substitutions of personalization ${i}, with the sections they name, expand to more than ${err.limit} characters; this deployment refuses substitutions that grow that large.`,
      ),
    );
  }
  return err.field === "subject" ? subjectTooLong(i) : headerTooLong(i, err.field.slice("headers.".length));
}

function subjectTooLong(i: number): AppError {
  return tooLarge(
    "invalid_request",
    fieldError(
      ["personalizations", i, "subject"],
      `After substitutions, the subject of personalization ${i} is longer than ${MAX_SUBJECT_BYTES} bytes (UTF-8), the most this deployment accepts.`,
    ),
  );
}

function headerTooLong(i: number, name: string): AppError {
  return tooLarge(
    "invalid_request",
    fieldError(
      ["personalizations", i, "headers", name],
      `After substitutions, the value of the header ${JSON.stringify(name)} in personalization ${i} is longer than ${MAX_HEADER_VALUE_BYTES} bytes (UTF-8), the most this deployment accepts.`,
    ),
  );
}

/** `bytes` null: substitution was stopped before the body was complete, so only "over" is known. */
function bodyTooLarge(i: number, bytes: number | null): AppError {
  const size = bytes === null ? `over ${MAX_BODY_BYTES}` : `${bytes}`;
  return new AppError("payload_too_large", "Message body too large", {
    fields: [
      {
        message: `The message content of personalization ${i} is ${size} bytes; this deployment accepts at most ${MAX_BODY_BYTES} bytes of text and HTML per message.`,
        field: "content",
        help: null,
      },
    ],
  });
}

/** The field limits of validation, on the expanded draft (top-level and personalization headers merged). */
function checkDraft(d: MessageDraft, sizes: BodySizes): void {
  const i = d.personalizationIndex;
  if (d.subject !== undefined && utf8ByteLength(d.subject) > MAX_SUBJECT_BYTES) throw subjectTooLong(i);
  let headerBytes = 0;
  for (const [name, value] of Object.entries(d.headers)) {
    const valueBytes = utf8ByteLength(value);
    if (valueBytes > MAX_HEADER_VALUE_BYTES) throw headerTooLong(i, name);
    headerBytes += utf8ByteLength(name) + valueBytes;
  }
  if (headerBytes > MAX_HEADERS_BYTES) {
    throw tooLarge(
      "invalid_request",
      fieldError(
        ["personalizations", i, "headers"],
        `The headers of personalization ${i}, merged with the top-level headers, total ${headerBytes} bytes; at most ${MAX_HEADERS_BYTES} bytes (names and values, UTF-8) are accepted.`,
      ),
    );
  }
  const bytes = sizes.bytes(d.text) + sizes.bytes(d.html);
  if (bytes > MAX_BODY_BYTES) throw bodyTooLarge(i, bytes);
}

/** The message as the hub will hand it to an origin (its outbox entry), measured in UTF-8 like a frame. */
function checkJobSize(entry: OutboxEntry, i: number): void {
  const json = JSON.stringify(entry);
  // At most 3 bytes per UTF-16 unit: a job this short fits without counting its bytes.
  if (json.length * 3 <= MAX_JOB_BYTES) return;
  const bytes = utf8ByteLength(json);
  if (bytes > MAX_JOB_BYTES) {
    throw tooLarge(
      "payload_too_large",
      fieldError(
        ["personalizations", i],
        `The message of personalization ${i} is ${bytes} bytes as a delivery job; at most ${MAX_JOB_BYTES} bytes fit the link to the delivery nodes (content, headers and addresses together, as JSON).`,
      ),
    );
  }
}

/** Live sends need every From domain verified and active (docs/api/admin.md#sender-domains); 403 otherwise. */
async function requireVerifiedDomains(
  db: Db,
  tenantId: string,
  drafts: MessageDraft[],
): Promise<Map<string, DomainRow>> {
  const names = [...new Set(drafts.map((d) => domainOf(d.from.email)))];
  const found = new Map((await cachedDomainsByNames(db, tenantId, names)).map((d) => [d.domain, d]));
  const bad = names.filter((n) => {
    const d = found.get(n);
    return !d || !d.verified || !d.isActive;
  });
  if (bad.length > 0) {
    throw new AppError("forbidden", "Sender domain not verified", {
      fields: bad.map((n) => ({
        message: `Sender domain not verified: ${n}. Add it with POST /api/admin/domains, publish its DNS records, then POST /api/admin/domains/{id}/verify.`,
        field: "from.email",
        help: "https://scaisend.scailabs.ai/docs/concepts/sender-domains",
      })),
    });
  }
  return found;
}
