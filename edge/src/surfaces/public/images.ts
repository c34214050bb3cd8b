/**
 * `GET` / `HEAD /i/{image_id}` (docs/api/images.md#the-public-url): the image library's public URL,
 * no authentication — recipients' mail clients load it from the HTML. An id is unguessable
 * (services/images.ts), an image never changes under its id, so the answer is cacheable for a year
 * (`immutable`); the ETag is the SHA-256 of the bytes served and `If-None-Match` gets a 304.
 * `?variant=thumbnail` serves the thumbnail; any other variant is a 400. After a delete: 410.
 * The Content-Type is the sniffed image type (never anything a browser would run), with `nosniff`
 * and a CSP that allows nothing, in case a client opens the URL as a page.
 */
import { Hono, type Context } from "hono";
import type { AppEnv } from "../../context.ts";
import { etagOf, serveImage } from "../../services/images.ts";

const IMMUTABLE = "public, max-age=31536000, immutable";

function problem(c: Context<AppEnv>, status: 400 | 404 | 410, detail: string): Response {
  c.header("Cache-Control", "no-store");
  c.header("X-Content-Type-Options", "nosniff");
  return c.json({ detail }, status);
}

export const imageProxy = new Hono<AppEnv>().get("/:id", async (c) => {
  const variant = c.req.query("variant");
  if (variant !== undefined && variant !== "thumbnail") {
    return problem(c, 400, 'variant must be "thumbnail" (or left out for the original)');
  }
  const served = await serveImage(
    c.get("db"),
    c.env.BLOBS,
    c.req.param("id"),
    variant === "thumbnail" ? "thumbnail" : "original",
    { head: c.req.method === "HEAD", ifNoneMatch: c.req.header("if-none-match") },
  );
  if (served.kind === "missing") return problem(c, 404, "Image not found");
  if (served.kind === "gone") return problem(c, 410, "Image deleted");
  const headers = new Headers({
    "Cache-Control": IMMUTABLE,
    ETag: etagOf(served.sha256),
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
    "Cross-Origin-Resource-Policy": "cross-origin",
  });
  if (served.kind === "not_modified") return new Response(null, { status: 304, headers });
  headers.set("Content-Type", served.contentType);
  headers.set("Content-Length", String(served.object.size));
  if (served.kind !== "body") return new Response(null, { status: 200, headers }); // HEAD
  return new Response(served.object.body, { status: 200, headers });
});
