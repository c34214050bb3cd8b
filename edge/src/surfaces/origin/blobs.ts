/**
 * GET /origin/blobs/<key> and /origin/templates/<key>: the origin fetches the attachments, large
 * bodies and template snapshots a delivery job names by reference (docs/link-protocol.md#blobs). Authenticated like /link, with ORIGIN_TOKEN as a bearer
 * token compared in constant time (401 otherwise). Only keys of the form the send path writes
 * (services/blobs.ts) are served; any other key, or one that is gone, is 404, so the origin can tell
 * "deleted" (fail the message) from "unreachable" (try again later). The body streams from R2.
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { timingSafeEqualStrings } from "../../lib/crypto.ts";
import { isBlobKey } from "../../services/blobs.ts";
import { isTemplateSnapshotKey } from "../../services/template-snapshots.ts";

export const originBlobs = new Hono<AppEnv>().get("/*", async (c) => {
  const header = c.req.header("authorization") ?? "";
  const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1] ?? "";
  if (!(await timingSafeEqualStrings(token, c.get("config").ORIGIN_TOKEN))) {
    throw new AppError("unauthorized", "Invalid origin token");
  }
  const key = decodeURIComponent(new URL(c.req.url).pathname.slice("/origin/".length));
  if (!isBlobKey(key) && !isTemplateSnapshotKey(key)) throw new AppError("not_found", "Not Found");
  const object = await c.env.BLOBS.get(key);
  if (object === null) throw new AppError("not_found", "Not Found");
  return new Response(object.body, {
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(object.size),
      "cache-control": "no-store",
    },
  });
});
