/**
 * Tracking tokens: the opaque part of `/t/o/{token}.gif`, `/t/c/{token}?u=…` and `/t/u/{token}`
 * (docs/api/tracking.md#tokens). Web Crypto only, so the origin (which signs, when it writes the
 * links into a message) and the edge (which verifies, when a recipient's client calls the link)
 * share this module.
 *
 * A token is `<claims>.<tag>`, both base64url without padding:
 *  - claims: the UTF-8 JSON array `[kind, tenant id, message id, recipient, …extra]`, where kind is
 *    `o` (open), `c` (click) or `u` (unsubscribe), and an unsubscribe token adds the message's
 *    ASM group id (or null) and its `groups_to_display`;
 *  - tag: the first 16 bytes of HMAC-SHA256(key, DOMAIN ‖ claims ‖ [0x00 ‖ url]), where the url is
 *    a click's destination (carried in `?u=`, so the redirect needs no storage read and the token
 *    cannot be re-aimed at another URL: a different `u` fails the tag).
 *
 * The key is never TRACKING_SECRET itself: `deriveTrackingKey` runs HKDF-SHA256 over it with a
 * purpose label, and only the derived key is handed to origins (docs/link-protocol.md#tracking).
 * A tag is checked by recomputing it and comparing all TAG_BYTES with an XOR fold (constant time:
 * no early exit, the same work whichever byte differs).
 *
 * Verification answers a status the routes use as it is: 404 for something that is not a token at
 * all (cannot be decoded, the wrong kind, the wrong shape), 400 for a well-formed token whose tag
 * does not match (tampered or forged), or a click whose `u` is missing, not http(s), or not the URL
 * it was signed for.
 */

export type TrackingKind = "open" | "click" | "unsubscribe";

const KIND_CODE = { open: "o", click: "c", unsubscribe: "u" } as const satisfies Record<TrackingKind, string>;

export interface TrackingClaims {
  tenantId: string;
  messageId: string;
  recipient: string;
}

export interface UnsubscribeClaims extends TrackingClaims {
  /** The message's `asm.group_id`, or null without one. */
  asmGroupId: number | null;
  /** The message's `asm.groups_to_display` (may be empty). */
  groupsToDisplay: number[];
}

export type VerifyResult<C> = { ok: true; claims: C } | { ok: false; status: 400 | 404; reason: string };

/** Bytes of the tag kept (128 bits: forging one is a 2^-128 guess per try). */
export const TAG_BYTES = 16;
/** Tokens longer than this are not ours (a recipient address is at most 320 characters). */
export const MAX_TOKEN_LENGTH = 2048;
/** A click destination longer than this is refused when signing, and not a redirect target. */
export const MAX_CLICK_URL_LENGTH = 8192;

const DOMAIN = new TextEncoder().encode("scaisend-tracking-token-v1\0");
const HKDF_INFO = new TextEncoder().encode("scaisend tracking token key v1");

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export function base64url(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(s: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) return null;
  try {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

/** The 32-byte token key derived from TRACKING_SECRET (HKDF-SHA256, empty salt, purpose label). */
export async function deriveTrackingKey(trackingSecret: string): Promise<Uint8Array<ArrayBuffer>> {
  const ikm = await crypto.subtle.importKey("raw", enc.encode(trackingSecret), "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: HKDF_INFO },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}

/** True for a URL a click may lead to: absolute http(s), no credentials, no control characters. */
export function isRedirectableUrl(url: string): boolean {
  if (url.length === 0 || url.length > MAX_CLICK_URL_LENGTH) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f]/.test(url)) return false;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return (u.protocol === "http:" || u.protocol === "https:") && u.username === "" && u.password === "";
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const macInput = (claims: string, url: string | undefined) =>
  concat(
    url === undefined
      ? [DOMAIN, enc.encode(claims)]
      : [DOMAIN, enc.encode(claims), new Uint8Array([0]), enc.encode(url)],
  );

export interface TrackingSigner {
  sign(kind: "open", claims: TrackingClaims): Promise<string>;
  sign(kind: "click", claims: TrackingClaims, url: string): Promise<string>;
  sign(kind: "unsubscribe", claims: UnsubscribeClaims): Promise<string>;
  verifyOpen(token: string): Promise<VerifyResult<TrackingClaims>>;
  /** `url` is the request's `u` (null when absent). */
  verifyClick(token: string, url: string | null): Promise<VerifyResult<TrackingClaims & { url: string }>>;
  verifyUnsubscribe(token: string): Promise<VerifyResult<UnsubscribeClaims>>;
}

/**
 * Signs and verifies with `key` (deriveTrackingKey's output). The HMAC key is imported once;
 * the signer is meant to be kept (per isolate at the edge, per compose thread at the origin).
 */
export function createTrackingSigner(key: Uint8Array<ArrayBuffer>): TrackingSigner {
  if (key.length < 32) throw new Error("tracking key must be at least 32 bytes");
  const imported = crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
  // subtle.verify needs the full 32-byte tag; a truncated one is recomputed and compared in `check`.
  async function tag(claims: string, url: string | undefined): Promise<Uint8Array> {
    const mac = await crypto.subtle.sign("HMAC", await imported, macInput(claims, url));
    return new Uint8Array(mac, 0, TAG_BYTES);
  }

  async function sign(
    kind: TrackingKind,
    c: TrackingClaims | UnsubscribeClaims,
    url?: string,
  ): Promise<string> {
    if (kind === "click" && (url === undefined || !isRedirectableUrl(url)))
      throw new Error("a click token needs an absolute http(s) URL");
    const fields: unknown[] = [KIND_CODE[kind], c.tenantId, c.messageId, c.recipient];
    if (kind === "unsubscribe") {
      const u = c as UnsubscribeClaims;
      fields.push(u.asmGroupId, u.groupsToDisplay);
    }
    const claims = base64url(enc.encode(JSON.stringify(fields)));
    return `${claims}.${base64url(await tag(claims, kind === "click" ? url : undefined))}`;
  }

  type Decoded = { claims: string; tag: Uint8Array; fields: unknown[] };
  function decode(token: string, kind: TrackingKind): Decoded | string {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return "not a token";
    const dot = token.indexOf(".");
    if (dot <= 0 || dot !== token.lastIndexOf(".")) return "not a token";
    const claims = token.slice(0, dot);
    const tagBytes = fromBase64url(token.slice(dot + 1));
    const claimBytes = fromBase64url(claims);
    if (!tagBytes || tagBytes.length !== TAG_BYTES || !claimBytes) return "not a token";
    let fields: unknown;
    try {
      fields = JSON.parse(dec.decode(claimBytes));
    } catch {
      return "not a token";
    }
    if (!Array.isArray(fields) || fields[0] !== KIND_CODE[kind]) return "not a token of this kind";
    const [, tenant, message, recipient] = fields;
    if (![tenant, message, recipient].every((v) => typeof v === "string" && v.length > 0 && v.length <= 320))
      return "not a token";
    if (kind === "unsubscribe") {
      const [, , , , group, display] = fields;
      const okGroup = group === null || Number.isSafeInteger(group);
      const okDisplay = Array.isArray(display) && display.length <= 25 && display.every(Number.isSafeInteger);
      if (fields.length !== 6 || !okGroup || !okDisplay) return "not a token";
    } else if (fields.length !== 4) return "not a token";
    return { claims, tag: tagBytes, fields };
  }

  async function check(d: Decoded, url: string | undefined): Promise<boolean> {
    const expected = await tag(d.claims, url);
    let diff = 0;
    for (let i = 0; i < TAG_BYTES; i++) diff |= expected[i]! ^ d.tag[i]!;
    return diff === 0;
  }

  const base = (f: unknown[]): TrackingClaims => ({
    tenantId: f[1] as string,
    messageId: f[2] as string,
    recipient: f[3] as string,
  });

  return {
    sign: sign as TrackingSigner["sign"],
    async verifyOpen(token) {
      const d = decode(token, "open");
      if (typeof d === "string") return { ok: false, status: 404, reason: d };
      if (!(await check(d, undefined)))
        return { ok: false, status: 400, reason: "the token's signature does not match" };
      return { ok: true, claims: base(d.fields) };
    },
    async verifyClick(token, url) {
      const d = decode(token, "click");
      if (typeof d === "string") return { ok: false, status: 404, reason: d };
      if (url === null) return { ok: false, status: 400, reason: "the u parameter is missing" };
      if (!isRedirectableUrl(url))
        return { ok: false, status: 400, reason: "u is not an absolute http(s) URL" };
      if (!(await check(d, url)))
        return { ok: false, status: 400, reason: "the token's signature does not match this URL" };
      return { ok: true, claims: { ...base(d.fields), url } };
    },
    async verifyUnsubscribe(token) {
      const d = decode(token, "unsubscribe");
      if (typeof d === "string") return { ok: false, status: 404, reason: d };
      if (!(await check(d, undefined)))
        return { ok: false, status: 400, reason: "the token's signature does not match" };
      return {
        ok: true,
        claims: {
          ...base(d.fields),
          asmGroupId: d.fields[4] as number | null,
          groupsToDisplay: d.fields[5] as number[],
        },
      };
    },
  };
}
