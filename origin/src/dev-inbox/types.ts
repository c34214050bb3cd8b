// Shapes shared by the dev inbox modules. Everything here except `raw` is derived from
// attacker-controlled input (the message), so renderers must escape every string field.

/** mailauth's DKIM result keywords (RFC 8601 §2.7.1), as reported for one signature. */
export type DkimResult =
  | "pass"
  | "fail"
  | "neutral"
  | "none"
  | "temperror"
  | "temperr"
  | "permerror"
  | "policy"
  | "softfail"
  | "skipped"
  | "declined";

export interface DkimSignatureResult {
  result: DkimResult;
  domain: string | null;
  selector: string | null;
  algo: string | null;
  /** mailauth's reason, e.g. "body hash did not verify" or "message not signed". */
  comment: string | null;
  /** Authentication-Results style row, e.g. "dkim=pass header.d=example.com header.s=s1 ...". */
  info: string;
}

/** The verdict shown in the UI: the first passing signature, else the first one seen. */
export interface DkimSummary extends DkimSignatureResult {
  signatures: DkimSignatureResult[];
}

export interface HeaderLine {
  /** Header name as written in the message (case preserved). */
  name: string;
  /** Unfolded value, still encoded (RFC 2047 words are shown as sent). */
  value: string;
}

export interface AttachmentSummary {
  filename: string | null;
  contentType: string;
  size: number;
  contentId: string | null;
}

export interface StoredMessage {
  id: string;
  receivedAt: Date;
  /** SMTP envelope; mailFrom is "" for the null reverse-path (`MAIL FROM:<>`). */
  envelope: { mailFrom: string; rcptTo: string[] };
  /** The message exactly as received after DATA (dot-unstuffed, CRLF line ends). */
  raw: Buffer;
  size: number;
  headers: HeaderLine[];
  subject: string;
  /** Header addresses in display form ("Name <a@b>"); "" when the header is absent. */
  from: string;
  to: string;
  cc: string;
  messageId: string | null;
  date: Date | null;
  text: string;
  html: string | null;
  attachments: AttachmentSummary[];
  /** Decoded content of each attachment, same order as `attachments` (served for download only). */
  attachmentData: Buffer[];
  dkim: DkimSummary;
  /** Set when mailparser could not parse the message; the raw source is still kept. */
  parseError: string | null;
}
