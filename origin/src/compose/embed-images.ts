/**
 * `image_embed_mode` (docs/api/images.md#image_embed_mode), applied to a message's final HTML before
 * tracking (compose.ts), with the key and base URL the link's welcome handed this node:
 *
 *  - every external `<img src="http(s)://…">` (a host other than the edge's) becomes the edge's
 *    signed image proxy URL `…/i/p/{token}?u=<the URL>` (shared/tracking/image-proxy-token.ts), so
 *    recipients' clients load it from the edge and not from the third party;
 *  - the edge's own library images (`…/i/{image_id}`, optionally `?variant=thumbnail`) stay as they
 *    are in `proxy` mode (the default); in `cid` mode they are fetched from that public URL and
 *    embedded as inline parts (multipart/related, RFC 2387) named by a Content-ID, and the src becomes
 *    `cid:…` (RFC 2392). At most MAX_CID_IMAGES distinct images and MAX_CID_BYTES in all per message;
 *    an image over the cap, or one that cannot be fetched (missing, deleted, not an image, slow), keeps
 *    its URL, and a warning is logged: the message is still sent, and the URL shows the image (or the
 *    edge's 404/410) as it would in proxy mode.
 *
 * Left alone: `data:` and `cid:` sources, relative and templated ones, `srcset`, and the edge's other
 * URLs (the open pixel is added after this step and is never proxied).
 */
import { createImageProxySigner, type ImageProxySigner } from "../../../shared/tracking/image-proxy-token.ts";
import { fromBase64url, isRedirectableUrl } from "../../../shared/tracking/token.ts";
import type { AttachmentRef } from "../../../shared/link/protocol.ts";
import type { TrackedJob } from "./tracking.ts";

/** Distinct library images embedded per message at most; the rest keep their URL. */
export const MAX_CID_IMAGES = 10;
/** Bytes of embedded images per message at most (before base64); an image that would pass it keeps its URL. */
export const MAX_CID_BYTES = 5 * 1024 * 1024;
/** How long one image fetch may take. */
export const CID_FETCH_TIMEOUT_MS = 5_000;
/** How long all of a message's fetches may take together (well inside the compose pool's 30 s per message). */
export const CID_TOTAL_TIMEOUT_MS = 12_000;

const IMAGE_ID = /^img_[0-9A-HJKMNP-TV-Z]{26}$/;
const OWN_CID = /^img_[0-9A-HJKMNP-TV-Z]{26}(\.thumbnail)?@scaisend$/;
const EXT: Record<string, string> = {
  "image/jpeg": "jpg",
  "image/png": "png",
  "image/gif": "gif",
  "image/webp": "webp",
};

const IMG_TAG = /<img\b[^>]*>/gi;
const SRC = /(\ssrc\s*=\s*)("([^"]*)"|'([^']*)'|([^\s"'>]+))/i;

const escapeAttr = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const decodeAmp = (s: string) =>
  s
    .replace(/&amp;/gi, "&")
    .replace(/&quot;/gi, '"')
    .replace(/&#39;|&apos;/gi, "'");

const signers = new Map<string, ImageProxySigner>();
function signerFor(key: string): ImageProxySigner {
  let s = signers.get(key);
  if (!s) {
    const bytes = fromBase64url(key);
    if (!bytes || bytes.length < 32) throw new Error("the tracking key from the edge is not valid");
    s = createImageProxySigner(bytes);
    if (signers.size > 8) signers.clear();
    signers.set(key, s);
  }
  return s;
}

/** The library image a src names on this edge (`{base}/i/{id}` and at most `?variant=thumbnail`), or null. */
export function libraryImageOf(src: string, base: string): { id: string; thumbnail: boolean } | null {
  let u: URL;
  let b: URL;
  try {
    u = new URL(src);
    b = new URL(base);
  } catch {
    return null;
  }
  if (u.origin !== b.origin) return null;
  const prefix = b.pathname.replace(/\/+$/, "") + "/i/";
  if (!u.pathname.startsWith(prefix)) return null;
  const id = u.pathname.slice(prefix.length);
  if (!IMAGE_ID.test(id)) return null;
  const q = [...u.searchParams];
  if (q.length === 0) return { id, thumbnail: false };
  if (q.length === 1 && q[0]![0] === "variant" && q[0]![1] === "thumbnail") return { id, thumbnail: true };
  return null;
}

const sameOrigin = (src: string, base: string) => {
  try {
    return new URL(src).origin === new URL(base).origin;
  } catch {
    return false;
  }
};

export type FetchImage = (url: string) => Promise<{ type: string; bytes: Uint8Array } | string>;

/** GET of a library image's public URL: 200, one of the four image types, within `maxBytes`. */
export function fetchLibraryImage(maxBytes: () => number, deadline?: AbortSignal): FetchImage {
  return async (url) => {
    let res: Response;
    try {
      const own = AbortSignal.timeout(CID_FETCH_TIMEOUT_MS);
      const signal = deadline ? AbortSignal.any([own, deadline]) : own;
      res = await fetch(url, { redirect: "error", signal });
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      return `HTTP ${res.status}`;
    }
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (!(type in EXT)) {
      await res.body?.cancel();
      return `not an image (${type || "no Content-Type"})`;
    }
    const limit = maxBytes();
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > limit) {
      await res.body?.cancel();
      return `${declared} bytes is over the message's remaining ${limit}`;
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        size += chunk.length;
        if (size > limit) return `over the message's remaining ${limit} bytes`;
        chunks.push(chunk);
      }
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
    return { type, bytes };
  };
}

export interface EmbedOptions {
  /** Replaces the HTTP fetch of library images (tests of the caps count calls with it). */
  fetchImage?: FetchImage;
  warn?: (message: string, detail: Record<string, unknown>) => void;
}

const defaultWarn = (message: string, detail: Record<string, unknown>) =>
  console.warn(JSON.stringify({ level: "warn", msg: message, ...detail }));

/** The job with its images proxied or embedded; unchanged without a tracking context or HTML. */
export async function embedImages(job: TrackedJob, options: EmbedOptions = {}): Promise<TrackedJob> {
  const ctx = job.trackingContext;
  const html = job.message.html;
  if (!ctx || !job.message.tracking || html === undefined) return job;
  const base = ctx.baseUrl.replace(/\/+$/, "");
  const cid = job.message.tracking.images?.mode === "cid";
  const warn = options.warn ?? defaultWarn;
  const signer = signerFor(ctx.key);

  // First pass: what each <img> is.
  type Found = {
    start: number;
    end: number;
    tag: string;
    at: number;
    len: number;
    prefix: string;
    src: string;
  };
  const found: Found[] = [];
  for (const m of html.matchAll(IMG_TAG)) {
    const s = SRC.exec(m[0]);
    if (!s) continue;
    const raw = (s[3] ?? s[4] ?? s[5] ?? "").trim();
    found.push({
      start: m.index,
      end: m.index + m[0].length,
      tag: m[0],
      at: s.index,
      len: s[0].length,
      prefix: s[1]!,
      src: decodeAmp(raw),
    });
  }
  if (found.length === 0) return job;

  // cid: fetch the distinct library images, in order of first use, within the caps.
  const embedded = new Map<string, { cid: string; ref: AttachmentRef; bytes: Uint8Array }>();
  const existing = job.message.attachments ?? [];
  const canAttach = existing.length === 0 || job.attachmentBytes?.length === existing.length;
  if (cid && canAttach) {
    // Parts this step added before (a job composed again) count towards the caps.
    const earlier = existing.filter((a) => a.disposition === "inline" && OWN_CID.test(a.contentId ?? ""));
    let budget = MAX_CID_BYTES - earlier.reduce((n, a) => n + a.size, 0);
    let count = earlier.length;
    const fetchImage =
      options.fetchImage ?? fetchLibraryImage(() => budget, AbortSignal.timeout(CID_TOTAL_TIMEOUT_MS));
    const wanted: { key: string; id: string; thumbnail: boolean; url: string }[] = [];
    for (const f of found) {
      const lib = libraryImageOf(f.src, base);
      if (!lib) continue;
      const key = `${lib.id}${lib.thumbnail ? "?variant=thumbnail" : ""}`;
      if (wanted.some((w) => w.key === key)) continue;
      wanted.push({ key, ...lib, url: `${base}/i/${key}` });
    }
    for (const w of wanted) {
      if (count >= MAX_CID_IMAGES) {
        warn("image not embedded: the message has the most inline images already", {
          image: w.key,
          max: MAX_CID_IMAGES,
        });
        continue;
      }
      const got = await fetchImage(w.url);
      if (typeof got === "string" || got.bytes.length > budget) {
        const reason = typeof got === "string" ? got : `over the message's remaining ${budget} bytes`;
        warn("image not embedded; its URL is kept", { image: w.key, messageId: job.messageId, reason });
        continue;
      }
      budget -= got.bytes.length;
      count++;
      const cidValue = `${w.id}${w.thumbnail ? ".thumbnail" : ""}@scaisend`;
      embedded.set(w.key, {
        cid: cidValue,
        bytes: got.bytes,
        ref: {
          // Not a blob: the bytes travel with the job (attachmentBytes); the ref's blob fields are unused.
          key: `blobs/00000000/inline/${"0".repeat(64)}`,
          size: got.bytes.length,
          sha256: "0".repeat(64),
          filename: `${w.id}${w.thumbnail ? "-thumbnail" : ""}.${EXT[got.type]}`,
          type: got.type,
          disposition: "inline",
          contentId: cidValue,
        },
      });
    }
  } else if (cid) {
    warn("images not embedded: the job's attachments were not fetched", { messageId: job.messageId });
  }

  // Second pass: rewrite the srcs.
  const out: string[] = [];
  let last = 0;
  for (const f of found) {
    let replacement: string | null = null;
    const lib = libraryImageOf(f.src, base);
    if (lib) {
      const e = embedded.get(`${lib.id}${lib.thumbnail ? "?variant=thumbnail" : ""}`);
      if (e) replacement = `cid:${e.cid}`;
    } else if (isRedirectableUrl(f.src) && !sameOrigin(f.src, base)) {
      replacement = `${base}/i/p/${await signer.sign(job.tenantId, f.src)}?u=${encodeURIComponent(f.src)}`;
    }
    if (replacement === null) continue;
    const tag = f.tag.slice(0, f.at) + `${f.prefix}"${escapeAttr(replacement)}"` + f.tag.slice(f.at + f.len);
    out.push(html.slice(last, f.start), tag);
    last = f.end;
  }
  if (out.length === 0) return job;
  out.push(html.slice(last));

  const parts = [...embedded.values()];
  return {
    ...job,
    message: {
      ...job.message,
      html: out.join(""),
      ...(parts.length > 0 ? { attachments: [...existing, ...parts.map((p) => p.ref)] } : {}),
    },
    ...(parts.length > 0
      ? { attachmentBytes: [...(job.attachmentBytes ?? []), ...parts.map((p) => p.bytes)] }
      : {}),
  };
}
