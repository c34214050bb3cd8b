/**
 * Image proxy tokens: the opaque part of `/i/p/{token}?u=<image URL>` (docs/api/images.md#the-image-proxy).
 * The origin signs each external `<img src>` of a message it builds (origin/src/compose/embed-images.ts)
 * and the edge verifies before it fetches anything (edge/src/surfaces/public/image-proxy.ts).
 *
 * A token is `<claims>.<tag>`, both base64url without padding, like the tracking tokens
 * (shared/tracking/token.ts) and with the same derived key, but in a separate MAC domain so that no
 * tracking token is ever a proxy token or the other way round:
 *  - claims: the UTF-8 JSON array `["p", tenant id]`;
 *  - tag: the first 16 bytes of HMAC-SHA256(key, DOMAIN ‖ claims ‖ 0x00 ‖ url).
 * The tag binds the URL (carried in `u`), so a token proxies exactly one URL: another `u` fails it,
 * and the edge cannot be turned into an open fetcher. The tag is compared over all 16 bytes without
 * an early exit.
 */
import { base64url, fromBase64url, isRedirectableUrl, MAX_TOKEN_LENGTH, TAG_BYTES } from "./token.ts";

export type ProxyVerifyResult =
  { ok: true; tenantId: string; url: string } | { ok: false; status: 400 | 404; reason: string };

const DOMAIN = new TextEncoder().encode("scaisend-image-proxy-token-v1\0");
const KIND = "p";
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export interface ImageProxySigner {
  /** The token for `url` (absolute http(s), no credentials); throws for any other URL. */
  sign(tenantId: string, url: string): Promise<string>;
  /** `url` is the request's `u` (null when absent). */
  verify(token: string, url: string | null): Promise<ProxyVerifyResult>;
}

/** Signs and verifies with `key` (deriveTrackingKey's output, shared/tracking/token.ts). */
export function createImageProxySigner(key: Uint8Array<ArrayBuffer>): ImageProxySigner {
  if (key.length < 32) throw new Error("tracking key must be at least 32 bytes");
  const imported = crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  async function tag(claims: string, url: string): Promise<Uint8Array> {
    const c = enc.encode(claims);
    const u = enc.encode(url);
    const input = new Uint8Array(DOMAIN.length + c.length + 1 + u.length);
    input.set(DOMAIN, 0);
    input.set(c, DOMAIN.length);
    input[DOMAIN.length + c.length] = 0;
    input.set(u, DOMAIN.length + c.length + 1);
    return new Uint8Array(await crypto.subtle.sign("HMAC", await imported, input), 0, TAG_BYTES);
  }
  return {
    async sign(tenantId, url) {
      if (!isRedirectableUrl(url)) throw new Error("an image proxy token needs an absolute http(s) URL");
      const claims = base64url(enc.encode(JSON.stringify([KIND, tenantId])));
      return `${claims}.${base64url(await tag(claims, url))}`;
    },
    async verify(token, url) {
      const notToken = { ok: false, status: 404, reason: "not a token" } as const;
      if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return notToken;
      const dot = token.indexOf(".");
      if (dot <= 0 || dot !== token.lastIndexOf(".")) return notToken;
      const claims = token.slice(0, dot);
      const given = fromBase64url(token.slice(dot + 1));
      const claimBytes = fromBase64url(claims);
      if (!given || given.length !== TAG_BYTES || !claimBytes) return notToken;
      let fields: unknown;
      try {
        fields = JSON.parse(dec.decode(claimBytes));
      } catch {
        return notToken;
      }
      if (!Array.isArray(fields) || fields.length !== 2 || fields[0] !== KIND) return notToken;
      const tenantId = fields[1];
      if (typeof tenantId !== "string" || tenantId.length === 0 || tenantId.length > 320) return notToken;
      if (url === null) return { ok: false, status: 400, reason: "the u parameter is missing" };
      if (!isRedirectableUrl(url))
        return { ok: false, status: 400, reason: "u is not an absolute http(s) URL" };
      const expected = await tag(claims, url);
      let diff = 0;
      for (let i = 0; i < TAG_BYTES; i++) diff |= expected[i]! ^ given[i]!;
      if (diff !== 0)
        return { ok: false, status: 400, reason: "the token's signature does not match this URL" };
      return { ok: true, tenantId, url };
    },
  };
}
