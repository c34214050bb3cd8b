/**
 * What of a send goes to R2 (services/blobs.ts) and how its delivery jobs name it:
 *  - every attachment, decoded from base64, once per request (`messageBlobs`), shared by every
 *    personalization's job as AttachmentRefs;
 *  - a text or HTML body too large to travel inside a link frame (`bodyPlacement`): the job carries
 *    `textRef` / `htmlRef` instead of `text` / `html`. A body the personalization's substitutions did
 *    not change is the request's own content, hashed and stored once for all of them.
 * Bodies within INLINE_BODY_BYTES stay inline, as before: most mail never touches R2.
 */
import type { AttachmentRef, BlobRef } from "../../../shared/link/protocol.ts";
import type { MailSend } from "../../../shared/sendgrid/mail-send.ts";
import type { MessageDraft } from "../../../shared/sendgrid/personalize.ts";
import { utf8ByteLength } from "../../../shared/utf8.ts";
import type { OutboxEntry } from "../objects/origin-hub.ts";
import { base64ToBytes } from "../lib/base64.ts";
import { RequestBlobs } from "./blobs.ts";

/**
 * Text + HTML a job carries inline at most, as JSON-escaped UTF-8 (what the frame counts): a quarter
 * of a frame, leaving the rest to addresses and headers. Larger bodies go to R2, largest first.
 */
export const INLINE_BODY_BYTES = 256 * 1024;

/** The default attachment type (SendGrid's and RFC 2046's for unknown bytes). */
export const DEFAULT_ATTACHMENT_TYPE = "application/octet-stream";

export interface MessageBlobs {
  store: RequestBlobs;
  attachments: AttachmentRef[];
  /** Refs of the request's own bodies, for drafts whose substitutions changed nothing. */
  shared: { text?: BlobRef; html?: BlobRef };
}

/** Bytes of `s` as a JSON string in the frame; exact only up to the threshold (beyond, "over" is enough). */
function jsonBytes(s: string | undefined): number {
  if (s === undefined) return 0;
  const raw = utf8ByteLength(s);
  return raw > INLINE_BODY_BYTES ? raw : utf8ByteLength(JSON.stringify(s));
}

/** Which bodies stay inline (true) and which travel by reference (false). */
export function bodyPlacement(d: Pick<MessageDraft, "text" | "html">): { text: boolean; html: boolean } {
  const t = jsonBytes(d.text);
  const h = jsonBytes(d.html);
  if (t + h <= INLINE_BODY_BYTES) return { text: true, html: true };
  // Move the larger one; the other stays if it fits on its own.
  if (h >= t) return { text: t <= INLINE_BODY_BYTES, html: false };
  return { text: false, html: h <= INLINE_BODY_BYTES };
}

/**
 * Bytes this draft adds to R2 for the request's storage cap: its moved bodies, once for all drafts
 * that share the request's content (`seen` remembers that it was counted).
 */
export function offloadedBytes(d: MessageDraft, seen: { offloaded: boolean }): number {
  const placement = bodyPlacement(d);
  const bytes =
    (placement.text ? 0 : utf8ByteLength(d.text ?? "")) + (placement.html ? 0 : utf8ByteLength(d.html ?? ""));
  if (bytes === 0) return 0;
  if (d.substitutionsApplied) return bytes;
  if (seen.offloaded) return 0;
  seen.offloaded = true;
  return bytes;
}

/** The request's attachments, decoded and hashed (validation already checked the base64). */
export async function messageBlobs(tenantId: string, mail: MailSend, now: number): Promise<MessageBlobs> {
  const store = new RequestBlobs(tenantId, now);
  const attachments: AttachmentRef[] = [];
  for (const a of mail.attachments ?? []) {
    const ref = await store.add(decodeBase64(a.content));
    const disposition = a.disposition ?? "attachment";
    attachments.push({
      ...ref,
      filename: a.filename,
      type: a.type ?? DEFAULT_ATTACHMENT_TYPE,
      disposition,
      ...(a.content_id !== undefined && a.content_id !== "" ? { contentId: a.content_id } : {}),
    });
  }
  return { store, attachments, shared: {} };
}

/** Adds the attachments and the moved bodies' refs to a job's message. */
export async function withBlobRefs(
  entry: OutboxEntry,
  blobs: MessageBlobs,
  d: MessageDraft,
  placement: { text: boolean; html: boolean },
): Promise<void> {
  const ref = async (kind: "text" | "html", body: string): Promise<BlobRef> => {
    if (d.substitutionsApplied) return blobs.store.add(utf8(body));
    return (blobs.shared[kind] ??= await blobs.store.add(utf8(body)));
  };
  if (!placement.text && d.text !== undefined) entry.message.textRef = await ref("text", d.text);
  if (!placement.html && d.html !== undefined) entry.message.htmlRef = await ref("html", d.html);
  if (blobs.attachments.length > 0) entry.message.attachments = blobs.attachments;
}

const utf8 = (s: string) => new TextEncoder().encode(s) as Uint8Array<ArrayBuffer>;

/**
 * Base64 as SendGrid takes it: line breaks and other whitespace ignored, padding optional
 * (shared/sendgrid/mail-send.ts `isBase64` has accepted exactly that). `atob` is the WHATWG
 * forgiving-base64 decode, which allows missing padding; the whitespace is dropped here.
 */
export function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  return base64ToBytes(b64.replace(/[\r\n\t ]/g, ""));
}
