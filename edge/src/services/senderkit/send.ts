/**
 * SenderKit's `POST /v1/send` after validation (docs/api/senderkit.md#send). One round trip to the
 * request's hub shard in both modes:
 *  - live email: the send becomes a SendGrid v3 body and goes through the SAME accept path as
 *    `/v3/mail/send` (services/send-mail.ts: size limits, verified From domain, tracking defaults and
 *    the one-click List-Unsubscribe the origin adds, the hub's accept with its Idempotency-Key); its
 *    SenderKit row rides in the message's catalog rows, and a future scheduledAt is the outbox
 *    entry's notBefore (the hub's send_at machinery, up to 30 days);
 *  - live sms / push / web-push: the send's provider connection (its template's override, else the
 *    channel's default; none → `400 provider_not_configured`) and ONE message in the hub shard, a
 *    channel job at dispatch (services/senderkit/channel-send.ts); quota as for live email;
 *  - test mode (any channel): never dispatched; the hub synthesizes the lifecycle
 *    (services/senderkit/test-lifecycle.ts). Quota is not counted.
 * Raw content is delivered verbatim unless `interpolate: true`; then the shared renderer
 * (shared/render) runs over it with `vars` in Mustache lookup, HTML-escaped in the HTML body only.
 * The text part is generated from the HTML when the send has none.
 */
import { compileTemplate, render } from "../../../../shared/render/index.ts";
import { validateMailSend, type MailSend } from "../../../../shared/sendgrid/mail-send.ts";
import type { Principal } from "../../context.ts";
import type { Db } from "../../db/client.ts";
import type { SkMessageRow } from "../../db/sk-messages.ts";
import { newMessageId, type ShardRef } from "../../lib/shards.ts";
import type { AcceptRequest, AcceptResult } from "../../objects/origin-hub.ts";
import { SkError, invalidRequest } from "../../surfaces/senderkit/errors.ts";
import { sendMail } from "../send-mail.ts";
import { htmlToPlainText } from "../templates-plain-text.ts";
import type { RawEmail, RawSend, SkAttachment } from "./send-input.ts";
import type { SkTestAccept, SkTestAcceptResult } from "./test-lifecycle.ts";
import { chargeLiveSend, refundLiveSend, type QuotaDefaults } from "./quota.ts";
import { connectionForSend } from "../provider-connections.ts";
import { channelAccepted } from "./channel-send.ts";

type KeyPrincipal = Extract<Principal, { kind: "api_key" }>;

export interface SkSendDeps {
  db: Db;
  shard: ShardRef;
  accept: (req: AcceptRequest) => Promise<AcceptResult>;
  acceptTest: (req: SkTestAccept) => Promise<SkTestAcceptResult>;
  blobs: Pick<R2Bucket, "put">;
  now: () => number;
  log: (msg: string, extra?: Record<string, unknown>) => void;
  quota: QuotaDefaults;
}

export interface SkSendRequest {
  send: RawSend;
  /** Set for a template send (its rendered output is `send.content`, never interpolated again). */
  template?: { slug: string; pinnedVersion: number | null };
  idempotency?: { key: string; bodyHash: string };
}

export interface SkSendResult {
  id: string;
  status: "queued" | "scheduled";
  livemode: boolean;
  replayed: boolean;
}

const idempotencyConflict = () =>
  new SkError(
    422,
    "idempotency_key_reused",
    "This Idempotency-Key was already used in the last 24 hours with a different request body; send the same body to get the original send, or use a new key.",
  );

export async function skSend(
  deps: SkSendDeps,
  principal: KeyPrincipal,
  req: SkSendRequest,
): Promise<SkSendResult> {
  const now = deps.now();
  const live = principal.environment === "live";
  const send = req.template || !req.send.interpolate ? req.send : interpolate(req.send);
  const scheduledAt = send.scheduledAt !== undefined ? Date.parse(send.scheduledAt) : null;
  const status = scheduledAt !== null ? "scheduled" : "queued";
  const id = newMessageId(deps.shard, now);
  const row: SkMessageRow = {
    id,
    uuid: crypto.randomUUID(),
    tenantId: principal.tenantId,
    livemode: live,
    channel: send.channel,
    recipient: send.to,
    templateSlug: req.template?.slug ?? null,
    pinnedVersion: req.template?.pinnedVersion ?? null,
    vars: send.vars,
    metadata: send.metadata,
    fromOverride: send.channel === "email" ? (send.from ?? null) : null,
    interpolate: req.template ? false : send.interpolate,
    idempotencyKey: req.idempotency?.key ?? null,
    scheduledAt,
    status: live ? null : status,
    error: null,
    timeline: live ? [] : [{ t: new Date(now).toISOString(), e: status }],
    provider: live ? "scaisend" : null,
    createdAt: now,
    updatedAt: now,
  };
  // The hub's idempotency store, namespaced by surface and environment (docs/api/senderkit.md#send).
  const idempotency = req.idempotency
    ? { key: `sk:${principal.environment}:${req.idempotency.key}`, bodyHash: req.idempotency.bodyHash }
    : undefined;

  if (!live) {
    const r = await deps.acceptTest({
      tenantId: principal.tenantId,
      rows: [row],
      ...(idempotency ? { idempotency } : {}),
    });
    if (!r.ok) throw idempotencyConflict();
    return {
      id: r.messageIds[0]!,
      status: r.replayed ? await replayedStatus(deps.db, r.messageIds[0]!) : status,
      livemode: false,
      replayed: r.replayed,
    };
  }
  if (send.channel !== "email") {
    const connection = await connectionForSend(deps.db, principal.tenantId, send.channel, req.template?.slug);
    if (!connection) {
      throw new SkError(
        400,
        "provider_not_configured",
        `No ${send.channel} provider is connected to this workspace; live ${send.channel} sends need one (POST /api/admin/tenants/{tenant_id}/provider-connections, or \`scaisend providers add\`; test-mode keys send without one).`,
      );
    }
    // Built (and checked) before the charge, so a send refused here costs no quota.
    const accepted = channelAccepted({
      id,
      send,
      row,
      connection,
      apiKeyId: principal.keyId,
      notBefore: scheduledAt !== null ? Math.max(0, scheduledAt) : 0,
      now,
    });
    const charged = await chargeLiveSend(deps.db, principal.tenantId, now, deps.quota);
    const refund = () =>
      refundLiveSend(deps.db, principal.tenantId, charged).catch((err: unknown) =>
        deps.log("senderkit quota refund failed", { error: String(err) }),
      );
    const r = await deps
      .accept({ tenantId: principal.tenantId, messages: [accepted], ...(idempotency ? { idempotency } : {}) })
      .catch(async (err: unknown) => {
        await refund();
        throw err;
      });
    if (!r.ok) {
      await refund();
      throw idempotencyConflict();
    }
    if (r.replayed) await refund();
    const first = r.messageIds[0]!;
    return {
      id: first,
      status: r.replayed ? await replayedStatus(deps.db, first, status) : status,
      livemode: true,
      replayed: r.replayed,
    };
  }
  const mail = await mailSendOf(deps.db, principal.tenantId, send);
  const charged = await chargeLiveSend(deps.db, principal.tenantId, now, deps.quota);
  const refund = () =>
    refundLiveSend(deps.db, principal.tenantId, charged).catch((err: unknown) =>
      deps.log("senderkit quota refund failed", { error: String(err) }),
    );
  const result = await sendMail(
    {
      db: deps.db,
      hub: { shard: deps.shard, accept: deps.accept },
      now: () => now,
      log: deps.log,
      blobs: deps.blobs,
    },
    principal,
    mail,
    {
      ...(idempotency ? { idempotency } : {}),
      decorate: (m) => {
        // The message keeps the id the send path gave it; the SenderKit row takes it too.
        m.catalog.senderkit = { ...row, id: m.entry.messageId };
        if (scheduledAt !== null) m.entry.notBefore = Math.max(0, scheduledAt);
      },
    },
  ).catch(async (err: unknown) => {
    await refund();
    if (
      err instanceof Error &&
      err.name === "AppError" &&
      (err as { code?: string }).code === "unprocessable"
    ) {
      throw idempotencyConflict();
    }
    throw err;
  });
  // A replay was charged when it was first accepted.
  if (result.replayed) await refund();
  const first = result.messageIds[0]!;
  return {
    id: first,
    status: result.replayed ? await replayedStatus(deps.db, first, status) : status,
    livemode: true,
    replayed: result.replayed,
  };
}

/**
 * A replay answers with the original send's status at accept (`scheduled` if it had a scheduledAt):
 * SendResult only knows queued and scheduled. Read from D1 when it has the row; otherwise the replayed
 * request's own, which has the same body and so the same scheduledAt.
 */
async function replayedStatus(db: Db, id: string, fallback: "queued" | "scheduled" = "queued") {
  const r = await db.$client
    .prepare("SELECT scheduled_at FROM sk_messages WHERE id = ?")
    .bind(id)
    .first<{ scheduled_at: number | null }>();
  if (!r) return fallback;
  return r.scheduled_at !== null ? "scheduled" : "queued";
}

/** Mustache over the raw content (docs/api/senderkit.md#send): HTML-escaped in the HTML body only. */
function interpolate(send: RawSend): RawSend {
  const one = (field: string, source: string, escape: "html" | "none"): string => {
    const compiled = compileTemplate(source);
    if (!compiled.ok) {
      throw invalidRequest(`content.${field}: ${compiled.error.message}`, [
        { code: "custom", path: ["content", field], message: compiled.error.message },
      ]);
    }
    const r = render(compiled.template, send.vars, { escape, lookup: "mustache" });
    if (!r.ok) {
      throw invalidRequest(`content.${field}: ${r.error.message}`, [
        { code: "custom", path: ["content", field], message: r.error.message },
      ]);
    }
    return r.output;
  };
  const content: Record<string, unknown> = { ...send.content };
  for (const [k, v] of Object.entries(send.content)) {
    if (typeof v === "string" && !["replyTo"].includes(k))
      content[k] = one(k, v, k === "html" ? "html" : "none");
  }
  return { ...send, content } as RawSend;
}

/** The tenant's first verified, active sender domain: the default From domain when the send names none. */
async function defaultFromDomain(db: Db, tenantId: string): Promise<string | null> {
  const r = await db.$client
    .prepare(
      "SELECT domain FROM sender_domains WHERE tenant_id = ? AND verified = 1 AND is_active = 1 ORDER BY created_at LIMIT 1",
    )
    .bind(tenantId)
    .first<{ domain: string }>();
  return r?.domain ?? null;
}

/** A hidden preheader: the inbox preview text, first in the body, not shown when the mail is opened. */
function withPreheader(html: string, preheader: string | undefined): string {
  if (!preheader) return html;
  const escaped = preheader.replace(
    /[&<>"]/g,
    (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch]!,
  );
  return `<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">${escaped}</div>${html}`;
}

function attachmentOf(a: SkAttachment) {
  return {
    content: a.content,
    filename: a.filename,
    type: a.contentType,
    disposition: a.inline ? "inline" : "attachment",
    ...(a.contentId !== undefined ? { content_id: a.contentId } : {}),
  };
}

/** The raw email as a SendGrid v3 body, validated by the same validator as /v3/mail/send. */
async function mailSendOf(db: Db, tenantId: string, send: RawEmail): Promise<MailSend> {
  let from = send.from;
  if (from === undefined) {
    const domain = await defaultFromDomain(db, tenantId);
    if (domain === null) {
      throw new SkError(
        400,
        "provider_not_configured",
        "No email sender is configured for this workspace: verify a sender domain (POST /api/admin/domains) or pass from.",
      );
    }
    from = `noreply@${domain}`;
  }
  const c = send.content;
  const html = withPreheader(c.html, c.preheader);
  const body = {
    personalizations: [
      {
        to: [{ email: send.to }],
        ...(c.cc?.length ? { cc: c.cc.map((email) => ({ email })) } : {}),
        ...(c.bcc?.length ? { bcc: c.bcc.map((email) => ({ email })) } : {}),
      },
    ],
    from: { email: from },
    ...(c.replyTo ? { reply_to: { email: c.replyTo } } : {}),
    subject: c.subject,
    content: [
      { type: "text/plain", value: c.text ?? htmlToPlainText(html) },
      { type: "text/html", value: html },
    ],
    ...(c.attachments?.length ? { attachments: c.attachments.map(attachmentOf) } : {}),
  };
  const v = validateMailSend(body);
  if (!v.ok) {
    throw invalidRequest(
      v.errors[0]?.message ?? "Invalid request",
      v.errors.map((e) => ({ code: "custom", path: skPathOf(e.field), message: e.message })),
    );
  }
  return v.value;
}

/** A v3 field path of the translated body → the SenderKit field it came from. */
function skPathOf(field: string | null): (string | number)[] {
  if (!field) return [];
  if (field.startsWith("from")) return ["from"];
  if (field.startsWith("subject")) return ["content", "subject"];
  if (field.startsWith("content")) return ["content"];
  if (field.startsWith("reply_to")) return ["content", "replyTo"];
  if (field.startsWith("attachments")) return ["content", "attachments"];
  if (/personalizations\.\d+\.to/.test(field)) return ["to"];
  if (/personalizations\.\d+\.cc/.test(field)) return ["content", "cc"];
  if (/personalizations\.\d+\.bcc/.test(field)) return ["content", "bcc"];
  return field.split(".");
}
