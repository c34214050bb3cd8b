/**
 * `GET` / `HEAD /i/p/{token}?u=<image URL>` (docs/api/images.md#the-image-proxy): external images of
 * a message, loaded through the edge. No authentication: the token (shared/tracking/image-proxy-token.ts),
 * signed by the origin that built the message, is bound to exactly the URL in `u`. A token that is not
 * one is 404, a tag that does not match `u` (tampered, or another URL) 400; then the fetch
 * (services/image-proxy.ts): a non-public target is 403, an upstream failure or an answer that is not
 * a whole JPEG, PNG, GIF or WebP 502, no answer in time 504. Errors are `{"detail"}` with `no-store`.
 */
import { Hono, type Context } from "hono";
import type { AppEnv } from "../../context.ts";
import type { Config } from "../../env.ts";
import { fetchProxiedImage, type ProxyDeps } from "../../services/image-proxy.ts";
import { dohAddressResolver } from "../../services/webhook-ssrf.ts";
import {
  createImageProxySigner,
  type ImageProxySigner,
} from "../../../../shared/tracking/image-proxy-token.ts";
import { deriveTrackingKey } from "../../../../shared/tracking/token.ts";

/**
 * Tests replace the network here (DNS answers and the upstream's responses), as the webhook tests do
 * on their queue object; production leaves it empty: DNS_RESOLVER_URL and the runtime's fetch.
 */
export const imageProxyTransport: { override: Partial<ProxyDeps> | null } = { override: null };

let signer: { secret: string; signer: Promise<ImageProxySigner> } | null = null;
function signerOf(config: Pick<Config, "TRACKING_SECRET">): Promise<ImageProxySigner> {
  if (signer?.secret !== config.TRACKING_SECRET) {
    const p = deriveTrackingKey(config.TRACKING_SECRET).then(createImageProxySigner);
    p.catch(() => (signer = null));
    signer = { secret: config.TRACKING_SECRET, signer: p };
  }
  return signer.signer;
}

function problem(c: Context<AppEnv>, status: 400 | 403 | 404 | 502 | 504, detail: string): Response {
  c.header("Cache-Control", "no-store");
  c.header("X-Content-Type-Options", "nosniff");
  return c.json({ detail }, status);
}

export const externalImageProxy = new Hono<AppEnv>().get("/:token", async (c) => {
  const config = c.get("config");
  const v = await (await signerOf(config)).verify(c.req.param("token"), c.req.query("u") ?? null);
  if (!v.ok) return problem(c, v.status, v.reason);
  const deps: ProxyDeps = {
    resolve: dohAddressResolver(config.DNS_RESOLVER_URL, config.DNS_TIMEOUT_MS),
    fetch: (req) => fetch(req),
    ...imageProxyTransport.override,
  };
  const got = await fetchProxiedImage(v.url, deps);
  if (!got.ok) return problem(c, got.status, got.detail);
  const headers = new Headers({
    "Content-Type": got.type,
    "Content-Length": String(got.bytes.length),
    "Cache-Control": got.cacheControl,
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Referrer-Policy": "no-referrer",
  });
  return new Response(c.req.method === "HEAD" ? null : got.bytes, { status: 200, headers });
});
