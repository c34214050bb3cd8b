/**
 * The send use case (docs/architecture.md, "The path of one message"), as named steps:
 *   decide mode → check the sender domains (live only) → expand personalizations → persist messages,
 *   recipients and `processed` events in one D1 batch → hand live messages to the OriginHub.
 * Validation has already happened (the route ran validateMailSend). Sandbox stops after persisting:
 * status `sandbox`, no events, nothing queued (docs/api/sendgrid.md#sandbox-and-live).
 */
import { AppError } from "../../../shared/errors.ts";
import { newId } from "../../../shared/ids.ts";
import { helpUrl, type MailSend } from "../../../shared/sendgrid/mail-send.ts";
import { expandPersonalizations, type MessageDraft } from "../../../shared/sendgrid/personalize.ts";
import type { Principal } from "../context.ts";
import type { Db } from "../db/client.ts";
import { findDomainsByNames, type DomainRow } from "../db/domains.ts";
import {
  insertMessagesStatements,
  type NewEvent,
  type NewMessage,
  type NewRecipient,
} from "../db/messages.ts";
import { buildOutboxEntry, domainOf, envelopeRecipients } from "./outbox-entry.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";

/**
 * Message bodies travel inline in link frames, which Durable Objects cap at 1 MiB; until large bodies
 * travel by reference through R2, one message's text + HTML is limited to this.
 */
export const MAX_INLINE_BODY_BYTES = 700 * 1024;

export interface SendDeps {
  db: Db;
  enqueue: (entries: OutboxEntry[]) => Promise<void>;
  now: () => number;
  log: (msg: string, extra?: Record<string, unknown>) => void;
}

export interface SendResult {
  messageIds: string[];
  mode: "live" | "sandbox";
}

type KeyPrincipal = Extract<Principal, { kind: "api_key" }>;

export function sendMode(principal: KeyPrincipal, mail: MailSend): "live" | "sandbox" {
  // A test key can never send live; the body flag can only make a live key safer (sandbox-vs-live table).
  if (principal.environment === "test") return "sandbox";
  return mail.mail_settings?.sandbox_mode?.enable === true ? "sandbox" : "live";
}

export async function sendMail(deps: SendDeps, principal: KeyPrincipal, mail: MailSend): Promise<SendResult> {
  const mode = sendMode(principal, mail);
  if (mail.template_id !== undefined) {
    // No templates exist yet, so no template id can be valid for this account (SendGrid's wording).
    throw new AppError("invalid_request", "Template not found", {
      fields: [
        {
          message: `The Template ID must be a valid template id for your account. You provided ${mail.template_id}.`,
          field: "template_id",
          help: helpUrl(["template_id"]),
        },
      ],
    });
  }
  const drafts = expandPersonalizations(mail);
  checkBodySizes(drafts);
  const domains =
    mode === "live" ? await requireVerifiedDomains(deps.db, principal.tenantId, drafts) : new Map();

  const now = deps.now();
  const rows: NewMessage[] = [];
  const recipients: NewRecipient[] = [];
  const firstEvents: NewEvent[] = [];
  for (const draft of drafts) {
    const id = newId("msg", now);
    const row = messageRow(id, principal, mode, draft, now);
    rows.push(row);
    for (const kind of ["to", "cc", "bcc"] as const) {
      for (const a of draft[kind]) {
        recipients.push({ messageId: id, tenantId: principal.tenantId, email: a.email.toLowerCase(), kind });
      }
    }
    if (mode === "live") {
      for (const email of envelopeRecipients(row)) {
        firstEvents.push({
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
    }
  }

  await deps.db.batch(insertMessagesStatements(deps.db, rows, recipients, firstEvents) as [never]);

  if (mode === "live") {
    const entries = rows.map((row) =>
      buildOutboxEntry(row as Parameters<typeof buildOutboxEntry>[0], domains.get(domainOf(row.fromEmail))),
    );
    try {
      await deps.enqueue(entries);
    } catch (err) {
      // The messages are safely in D1 as `queued`; the cron sweeper hands them to the hub again.
      deps.log("enqueue failed; the sweeper will retry", { error: String(err), count: entries.length });
    }
  }
  return { messageIds: rows.map((r) => r.id), mode };
}

function messageRow(
  id: string,
  principal: KeyPrincipal,
  mode: "live" | "sandbox",
  d: MessageDraft,
  now: number,
): NewMessage & { recipients: NonNullable<NewMessage["recipients"]> } {
  return {
    id,
    tenantId: principal.tenantId,
    status: mode === "live" ? "queued" : "sandbox",
    mode,
    apiKeyId: principal.keyId,
    fromEmail: d.from.email.toLowerCase(),
    fromName: d.from.name ?? null,
    subject: d.subject ?? "",
    toEmails: d.to.map((a) => a.email),
    recipients: { to: d.to, cc: d.cc, bcc: d.bcc, replyTo: d.replyTo },
    headers: d.headers,
    categories: d.categories,
    customArgs: d.customArgs,
    textBody: d.text ?? null,
    htmlBody: d.html ?? null,
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

function checkBodySizes(drafts: MessageDraft[]): void {
  const encoder = new TextEncoder();
  drafts.forEach((d, i) => {
    const other = d.otherContent[0];
    if (other) {
      // Refuse rather than silently drop a part the caller asked for.
      throw new AppError("invalid_request", "Unsupported content type", {
        fields: [
          {
            message: `Content of type ${other.type} is not supported yet; send text/plain and text/html.`,
            field: "content",
            help: null,
          },
        ],
      });
    }
    const bytes = encoder.encode(d.text ?? "").length + encoder.encode(d.html ?? "").length;
    if (bytes > MAX_INLINE_BODY_BYTES) {
      throw new AppError("payload_too_large", "Message body too large", {
        fields: [
          {
            message: `The message content of personalization ${i} is ${bytes} bytes; this deployment accepts at most ${MAX_INLINE_BODY_BYTES} bytes of text and HTML per message.`,
            field: "content",
            help: null,
          },
        ],
      });
    }
  });
}

/** Live sends need every From domain verified and active (docs/api/admin.md#sender-domains); 403 otherwise. */
async function requireVerifiedDomains(
  db: Db,
  tenantId: string,
  drafts: MessageDraft[],
): Promise<Map<string, DomainRow>> {
  const names = [...new Set(drafts.map((d) => domainOf(d.from.email)))];
  const found = new Map((await findDomainsByNames(db, tenantId, names)).map((d) => [d.domain, d]));
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
