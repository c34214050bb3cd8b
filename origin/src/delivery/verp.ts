/**
 * VERP return paths: `bounces+<messageId>.<tag>@<domain>`. An asynchronous bounce (a DSN sent
 * to the envelope sender hours later) names the message it belongs to in its own address, so the
 * inbound server maps it back without any stored state. The tag is an HMAC over the message id
 * so nobody can forge bounces for messages they did not receive.
 *
 * The tag is lowercase base32: some MTAs fold the local part's case, and base32 survives that.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const VERP_TAG_LENGTH = 10; // 50 bits: enough against guessing, short enough for the 64-octet local part
const DEFAULT_PREFIX = "bounces";
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
/** RFC 5321 §4.5.3.1.1: a local part is at most 64 octets. */
const MAX_LOCAL_PART = 64;

export interface VerpOptions {
  secret: string;
  domain: string;
  /** Local-part prefix before the "+", "bounces" unless set. */
  prefix?: string;
}

function base32(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1; // keep only the bits not yet emitted so the number never overflows
  }
  return out;
}

function verpTag(secret: string, messageId: string): string {
  // The "verp:" label keeps these MACs apart from anything else the same secret might sign.
  const mac = createHmac("sha256", secret).update(`verp:${messageId}`).digest();
  return base32(mac).slice(0, VERP_TAG_LENGTH);
}

/** Builds the envelope sender for one message. Throws when the address would break RFC 5321 limits. */
export function encodeVerp(messageId: string, options: VerpOptions): string {
  if (!/^[A-Za-z0-9._=-]+$/.test(messageId)) {
    // Only atext that needs no quoting, so the address is a plain dot-atom on every MTA.
    throw new Error(`message id "${messageId}" cannot be carried in a VERP address`);
  }
  const localPart = `${options.prefix ?? DEFAULT_PREFIX}+${messageId}.${verpTag(options.secret, messageId)}`;
  if (localPart.length > MAX_LOCAL_PART) {
    throw new Error(`VERP local part is ${localPart.length} octets, RFC 5321 allows ${MAX_LOCAL_PART}`);
  }
  return `${localPart}@${options.domain}`;
}

/**
 * Returns the message id a bounce address stands for, or null when the address is not ours or its
 * tag does not verify. The domain is not checked here: the inbound server only accepts its own.
 */
export function decodeVerp(
  address: string,
  options: Pick<VerpOptions, "secret" | "prefix">,
): { messageId: string } | null {
  const at = address.lastIndexOf("@");
  const localPart = (at === -1 ? address : address.slice(0, at)).replace(/^<|>$/g, "");
  const prefix = `${options.prefix ?? DEFAULT_PREFIX}+`;
  if (!localPart.toLowerCase().startsWith(prefix.toLowerCase())) return null;
  const rest = localPart.slice(prefix.length);
  const dot = rest.lastIndexOf("."); // message ids may contain dots, the tag never does
  if (dot <= 0) return null;
  const literal = rest.slice(0, dot);
  const tag = rest.slice(dot + 1).toLowerCase();
  // An MTA that folds the local part's case turns "msg_01H…" into "msg_01h…": the tag survives (base32),
  // and ScaiSend's ids (shared/ids.ts) are upper-case Crockford base32, so the original is recoverable.
  const candidates = [literal];
  if (/^msg_[0-9a-z]{26}$/i.test(literal)) {
    const canonical = `msg_${literal.slice(4).toUpperCase()}`;
    if (canonical !== literal) candidates.push(canonical);
  }
  // Only base32 can match; anything else (a non-ASCII character has another byte length, which
  // timingSafeEqual would throw on) is refused before comparing.
  if (!/^[a-z2-7]+$/.test(tag)) return null;
  let found: string | null = null;
  for (const messageId of candidates) {
    const expected = verpTag(options.secret, messageId);
    if (tag.length !== expected.length) return null;
    // Constant time so the tag cannot be found one character at a time by timing the inbound server.
    if (timingSafeEqual(Buffer.from(tag), Buffer.from(expected))) found ??= messageId;
  }
  return found === null ? null : { messageId: found };
}
