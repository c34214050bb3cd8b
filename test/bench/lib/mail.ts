/**
 * The benchmark message: ~4 KB of HTML, one sender domain, recipients on a domain whose MX points at
 * the sink. The same content is used for the API bodies, the link-protocol jobs and (by size) for
 * smtp-source, so every path moves the same bytes.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import type { DeliveryJob } from "../../../shared/link/protocol.ts";

export const SENDER_DOMAIN = "bench.test";
export const RECIPIENT_DOMAIN = "inbox.bench.test";
export const MX_HOST = "mx.bench.test";
export const FROM = { email: `news@${SENDER_DOMAIN}`, name: "ScaiSend Bench" };
export const SUBJECT = "Your weekly benchmark digest";

/** Deterministic ~4 KB HTML newsletter body. */
export function benchHtml(targetBytes = 4096): string {
  const para = (i: number) =>
    `<tr><td style="padding:8px 16px;font-family:Arial,sans-serif;font-size:14px;color:#333">` +
    `<h3 style="margin:0 0 4px">Item ${i}: what changed this week</h3>` +
    `<p style="margin:0">Lorem ipsum dolor sit amet, consectetur adipiscing elit. Integer nec odio. ` +
    `<a href="https://example.com/articles/${i}?utm_source=bench">Read more</a></p></td></tr>\n`;
  let html = `<!doctype html><html><head><meta charset="utf-8"><title>${SUBJECT}</title></head><body>\n<table width="100%" cellpadding="0" cellspacing="0">\n`;
  const tail = `</table><p style="font-size:11px;color:#999">You get this because you signed up. <a href="https://example.com/unsubscribe">Unsubscribe</a></p></body></html>\n`;
  let i = 1;
  while (Buffer.byteLength(html + para(i) + tail) <= targetBytes) html += para(i++);
  html += tail;
  return html;
}

/**
 * Sent as SendGrid clients often do; turned off, so the delivery figures stay comparable with runs
 * from before tracking was built (the tenant default has open and click tracking on: docs/api/tracking.md).
 */
export const TRACKING = {
  click_tracking: { enable: false, enable_text: false },
  open_tracking: { enable: false },
};

/** A SendGrid v3 body with `n` personalizations (one recipient each). */
export function mailSendBody(html: string, recipients: string[]): Record<string, unknown> {
  return {
    personalizations: recipients.map((email) => ({ to: [{ email }] })),
    from: FROM,
    subject: SUBJECT,
    content: [{ type: "text/html", value: html }],
    tracking_settings: TRACKING,
  };
}

export const recipient = (i: number) => `user${i}@${RECIPIENT_DOMAIN}`;

/** The Message-ID the edge gives a message id (send-mail.ts: id without "msg_", lowercased, @ sender domain). */
export const messageIdHeaderFor = (messageId: string) =>
  `${messageId.slice(4).toLowerCase()}@${SENDER_DOMAIN}`;

export function rsaKeyPem(): string {
  return generateKeyPairSync("rsa", { modulusLength: 2048 })
    .privateKey.export({ type: "pkcs8", format: "pem" })
    .toString();
}

export function ed25519KeyPem(): string {
  return generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

/** Jobs shaped exactly like the ones the OriginHub sends (one recipient, DKIM rsa-sha256). */
export function buildJobs(count: number, html: string, privateKeyPem: string): DeliveryJob[] {
  const run = randomBytes(4).toString("hex");
  const jobs: DeliveryJob[] = [];
  for (let i = 0; i < count; i++) {
    const messageId = `msg_BENCH${run}${String(i).padStart(7, "0")}`;
    const to = recipient(i);
    jobs.push({
      jobId: `${messageId}.1`,
      messageId,
      tenantId: "tnt_bench",
      attempt: 1,
      recipients: [to],
      message: {
        from: FROM,
        to: [{ email: to }],
        subject: SUBJECT,
        html,
        headers: {},
        messageIdHeader: messageIdHeaderFor(messageId),
      },
      dkim: { domain: SENDER_DOMAIN, selector: "scaisend", privateKeyPem },
    });
  }
  return jobs;
}
