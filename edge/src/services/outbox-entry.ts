import type { DomainRow } from "../db/domains.ts";
import type { MessageRow } from "../db/messages.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";

/**
 * Builds the hub's outbox entry from the D1 rows alone, so the send path and the sweeper
 * (which re-enqueues messages whose enqueue was lost) produce exactly the same job.
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
        }
      : null,
    notBefore: 0,
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
