import type { DomainRow } from "../db/domains.ts";
import type { MessageRow, NewEvent, NewMessage, NewRecipient } from "../db/messages.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";
import type { SkMessageRow } from "../db/sk-messages.ts";

/**
 * A live message's D1 catalog rows as its hub shard keeps them until the batched catalog flush
 * (docs/architecture.md, "The accept path"). The bodies are left out: the outbox entry carries
 * them already (`message.text` / `message.html`), and one copy keeps the hub's rows small.
 */
export interface CatalogRows {
  message: Omit<NewMessage, "textBody" | "htmlBody">;
  recipients: NewRecipient[];
  events: NewEvent[];
  /** A /v1 send's SenderKit row (db/sk-messages.ts), written with the others. */
  senderkit?: SkMessageRow;
}

/** One live message as the send path hands it to its hub shard: the job and the catalog rows. */
export interface AcceptedMessage {
  entry: OutboxEntry;
  catalog: CatalogRows;
}

export function catalogRowsOf(row: NewMessage, recipients: NewRecipient[], events: NewEvent[]): CatalogRows {
  const { textBody: _text, htmlBody: _html, ...message } = row;
  return { message, recipients, events };
}

/** The full `messages` row again: the catalog's columns plus the bodies from the outbox entry. */
export function catalogMessageRow(catalog: CatalogRows, entry: OutboxEntry): NewMessage {
  return { ...catalog.message, textBody: entry.message.text ?? null, htmlBody: entry.message.html ?? null };
}

/**
 * Builds the hub's outbox entry from the message row, so the send path and the sweeper's legacy
 * guard (which re-enqueues messages accepted before the hub took them) produce exactly the same job.
 */
export function buildOutboxEntry(
  m: MessageRow,
  domain: DomainRow | undefined,
  recipients: string[] = envelopeRecipients(m),
): OutboxEntry {
  const r = m.recipients;
  return {
    messageId: m.id,
    tenantId: m.tenantId,
    recipients,
    message: {
      from: m.fromName ? { email: m.fromEmail, name: m.fromName } : { email: m.fromEmail },
      ...(r.replyTo.length > 0 ? { replyTo: r.replyTo } : {}),
      to: r.to,
      ...(r.cc.length > 0 ? { cc: r.cc } : {}),
      subject: m.subject,
      ...(m.textBody !== null ? { text: m.textBody } : {}),
      ...(m.htmlBody !== null ? { html: m.htmlBody } : {}),
      headers: m.headers,
      messageIdHeader: m.messageIdHeader,
    },
    // The sealed key is snapshotted here; edge/src/lib/dkim-key-box.ts says what that means for a
    // SECRETS_KEY rotation. The domain id is the AAD the key was sealed with.
    dkim: domain
      ? {
          domainId: domain.id,
          domain: domain.domain,
          selector: domain.dkimSelector,
          privateKeySealed: domain.dkimPrivateKeyEnc,
          ...(ed25519KeyOf(domain) ?? {}),
        }
      : null,
    notBefore: 0,
  };
}

/**
 * A dual-signing domain's Ed25519 key, once verification has seen its record in DNS: signing with
 * a key whose record is not published yet (a new domain, or just after a rotation) would add a
 * signature every receiver fails (docs/api/admin.md#dual-signing-ed25519).
 */
function ed25519KeyOf(domain: DomainRow): Pick<NonNullable<OutboxEntry["dkim"]>, "ed25519"> | null {
  if (
    !domain.dkimEd25519Selector ||
    !domain.dkimEd25519PrivateKeyEnc ||
    domain.dkimEd25519VerifiedAt === null
  )
    return null;
  return {
    ed25519: { selector: domain.dkimEd25519Selector, privateKeySealed: domain.dkimEd25519PrivateKeyEnc },
  };
}

/** to + cc + bcc, each address once (case-insensitively), in that order. Bcc never appears in headers. */
export function envelopeRecipients(m: Pick<MessageRow, "recipients">): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const a of [...m.recipients.to, ...m.recipients.cc, ...m.recipients.bcc]) {
    const key = a.email.toLowerCase();
    if (!seen.has(key)) {
      seen.add(key);
      out.push(a.email);
    }
  }
  return out;
}

export const domainOf = (email: string) => email.slice(email.lastIndexOf("@") + 1).toLowerCase();
