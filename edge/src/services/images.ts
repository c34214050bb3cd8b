/**
 * The image library's use cases (docs/api/images.md): upload, list, folders, read, change, delete,
 * and what the public `/i/{image_id}` serves. Invariants:
 *  - the stored type is the sniffed one (services/image-sniff.ts), never the request's; every upload
 *    is decoded in full before anything is stored (services/image-thumbnail.ts);
 *  - ids are `img_` + a ULID with 80 random bits (shared/ids.ts): a URL cannot be guessed from another;
 *  - R2 holds `images/<id>/original` and `images/<id>/thumbnail` (a copy of the original when it
 *    already fits), each with its SHA-256 in the object's metadata, so `/i/` is one R2 read and never
 *    a D1 query while the image exists; the objects are written before the row, so a row always has
 *    its objects;
 *  - a delete removes the objects first, then marks the row deleted (a delete that fails half-way is
 *    retried whole); from then on `/i/` misses R2 and the row tells it 410 from 404;
 *  - the `images/` prefix is outside `blobs/`, so the attachment sweeper never touches it.
 */
import { AppError } from "../../../shared/errors.ts";
import { ulid } from "../../../shared/ids.ts";
import type { Db } from "../db/client.ts";
import {
  imageStateById,
  type ImageFilter,
  type ImagePatch,
  type ImageRow,
  tenantImages,
} from "../db/images.ts";
import { isoSeconds } from "../lib/time.ts";
import { sha256Hex } from "./blobs.ts";
import { isImageType, sniffImage, type ImageType } from "./image-sniff.ts";
import { decodeWithThumbnail, MAX_PIXELS } from "./image-thumbnail.ts";

/** 10 MB, the documented limit on one image (a bigger one is a 413). */
export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
export const MAX_FILENAME_LENGTH = 255;
export const MAX_FOLDER_LENGTH = 100;
export const MAX_ALT_TEXT_LENGTH = 1000;

/** `img_` + 26 Crockford base32 characters, as `ulid()` makes them. */
export const IMAGE_ID = /^img_[0-9A-HJKMNP-TV-Z]{26}$/;

export const originalKey = (id: string): string => `images/${id}/original`;
export const thumbnailKey = (id: string): string => `images/${id}/thumbnail`;

const EXTENSIONS: Record<ImageType, string> = {
  "image/jpeg": "jpg",
  "image/png": "png",
  "image/gif": "gif",
  "image/webp": "webp",
};

export interface ImageDeps {
  db: Db;
  bucket: R2Bucket;
  now: number;
}

/** The API's ImageResponse (docs/api/images.md#the-image-object). */
export interface ImageView {
  id: string;
  filename: string;
  original_filename: string;
  content_type: string;
  size: number;
  width: number;
  height: number;
  url: string;
  thumbnail_url: string;
  alt_text: string | null;
  folder: string | null;
  created_at: string | null;
  updated_at: string | null;
}

export function imageView(row: ImageRow, publicBase: string): ImageView {
  const url = `${publicBase}/i/${row.id}`;
  return {
    id: row.id,
    filename: row.filename,
    original_filename: row.originalFilename,
    content_type: row.contentType,
    size: row.size,
    width: row.width,
    height: row.height,
    url,
    thumbnail_url: `${url}?variant=thumbnail`,
    alt_text: row.altText,
    folder: row.folder,
    created_at: isoSeconds(row.createdAt),
    updated_at: isoSeconds(row.updatedAt),
  };
}

// ── Names ──────────────────────────────────────────────────────────────────────────────────────

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
const HAS_CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** The uploaded name as given, minus any path and control characters (kept as `original_filename`). */
export function cleanFilename(raw: string): string {
  const base = raw.split(/[\\/]/).pop() ?? "";
  const clean = base.replace(CONTROL, "").trim().slice(0, MAX_FILENAME_LENGTH);
  return clean === "" || clean === "." || clean === ".." ? "image" : clean;
}

/** `filename`: the cleaned name with the extension of the type the bytes are (logo.exe → logo.png). */
export function filenameFor(original: string, type: ImageType): string {
  const ext = EXTENSIONS[type];
  const dot = original.lastIndexOf(".");
  const stem = dot > 0 ? original.slice(0, dot) : original;
  const current = dot > 0 ? original.slice(dot + 1).toLowerCase() : "";
  if (current === ext || (type === "image/jpeg" && current === "jpeg")) return original;
  return `${stem.slice(0, MAX_FILENAME_LENGTH - ext.length - 1)}.${ext}`;
}

/** A folder name: 1–100 characters, no control characters; "" or null is no folder. */
export function folderName(v: string | null): string | null {
  if (v === null) return null;
  const t = v.trim();
  if (t === "") return null;
  if (t.length > MAX_FOLDER_LENGTH)
    throw new AppError("invalid_request", `folder may be at most ${MAX_FOLDER_LENGTH} characters`);
  if (HAS_CONTROL.test(t)) throw new AppError("invalid_request", "folder may not contain control characters");
  return t;
}

export function altText(v: string | null): string | null {
  if (v === null || v === "") return null;
  if (v.length > MAX_ALT_TEXT_LENGTH)
    throw new AppError("invalid_request", `alt_text may be at most ${MAX_ALT_TEXT_LENGTH} characters`);
  return v;
}

/** A new name given with PATCH: 1–255 characters, no path separators or control characters. */
export function renamed(v: string): string {
  const t = v.trim();
  if (t === "" || t.length > MAX_FILENAME_LENGTH)
    throw new AppError("invalid_request", `filename must be 1 to ${MAX_FILENAME_LENGTH} characters`);
  if (/[\\/]/.test(t) || HAS_CONTROL.test(t))
    throw new AppError("invalid_request", "filename may not contain slashes or control characters");
  return t;
}

// ── Use cases ──────────────────────────────────────────────────────────────────────────────────

export interface UploadInput {
  bytes: Uint8Array<ArrayBuffer>;
  originalFilename: string;
  altText: string | null;
  folder: string | null;
}

export async function uploadImage(deps: ImageDeps, tenantId: string, input: UploadInput): Promise<ImageRow> {
  if (input.bytes.byteLength > MAX_IMAGE_BYTES) {
    throw new AppError("payload_too_large", `The image is larger than ${MAX_IMAGE_BYTES} bytes (10 MB)`);
  }
  const sniffed = sniffImage(input.bytes);
  if (!sniffed.ok) throw new AppError("invalid_request", sniffed.message);
  if (sniffed.width * sniffed.height > MAX_PIXELS) {
    throw new AppError(
      "invalid_request",
      `the image is ${sniffed.width}×${sniffed.height}; images may have at most ${MAX_PIXELS} pixels (3840×2160)`,
    );
  }
  const decoded = await decodeWithThumbnail(input.bytes, sniffed.type, sniffed.width, sniffed.height);
  if (!decoded.ok) throw new AppError("invalid_request", `malformed image: ${decoded.message}`);

  const id = `img_${ulid(deps.now)}`;
  const sha256 = await sha256Hex(input.bytes);
  const thumb = decoded.thumbnail ?? { bytes: input.bytes, contentType: sniffed.type };
  const thumbSha = decoded.thumbnail ? await sha256Hex(decoded.thumbnail.bytes) : sha256;
  // Nothing names these objects until the row is written: if a put or the insert fails, take both
  // back (a delete of a key that was never written is a no-op) and fail the upload.
  const discard = () => deps.bucket.delete([originalKey(id), thumbnailKey(id)]).catch(() => undefined);
  try {
    await Promise.all([
      deps.bucket.put(originalKey(id), input.bytes, {
        sha256,
        httpMetadata: { contentType: sniffed.type },
        customMetadata: { sha256, tenant: tenantId },
      }),
      deps.bucket.put(thumbnailKey(id), thumb.bytes, {
        sha256: thumbSha,
        httpMetadata: { contentType: thumb.contentType },
        customMetadata: { sha256: thumbSha, tenant: tenantId },
      }),
    ]);
  } catch (err) {
    await discard();
    throw err;
  }
  const original = cleanFilename(input.originalFilename);
  const row: ImageRow = {
    id,
    tenantId,
    filename: filenameFor(original, sniffed.type),
    originalFilename: original,
    contentType: sniffed.type,
    size: input.bytes.byteLength,
    width: sniffed.width,
    height: sniffed.height,
    sha256,
    r2Key: originalKey(id),
    thumbnailKey: thumbnailKey(id),
    altText: input.altText,
    folder: input.folder,
    createdAt: deps.now,
    updatedAt: deps.now,
    deletedAt: null,
  };
  try {
    await tenantImages(deps.db, row.tenantId).insertImage(row);
  } catch (err) {
    await discard();
    throw err;
  }
  return row;
}

export const listTenantImages = (
  db: Db,
  tenantId: string,
  filter: ImageFilter,
  page: number,
  pageSize: number,
): Promise<{ rows: ImageRow[]; total: number }> =>
  tenantImages(db, tenantId).listImages(filter, page, pageSize);

export const tenantFolders = (db: Db, tenantId: string): Promise<string[]> =>
  tenantImages(db, tenantId).listFolders();

const notFound = () => new AppError("not_found", "Image not found");

export async function readImage(db: Db, tenantId: string, id: string): Promise<ImageRow> {
  const row = IMAGE_ID.test(id) ? await tenantImages(db, tenantId).getImage(id) : undefined;
  if (!row) throw notFound();
  return row;
}

export async function changeImage(
  db: Db,
  tenantId: string,
  id: string,
  patch: ImagePatch,
  now: number,
): Promise<ImageRow> {
  const row = IMAGE_ID.test(id) ? await tenantImages(db, tenantId).updateImage(id, patch, now) : undefined;
  if (!row) throw notFound();
  return row;
}

export async function deleteImage(deps: ImageDeps, tenantId: string, id: string): Promise<void> {
  const row = await readImage(deps.db, tenantId, id);
  await deps.bucket.delete([row.r2Key, ...(row.thumbnailKey ? [row.thumbnailKey] : [])]);
  if (!(await tenantImages(deps.db, tenantId).markImageDeleted(id, deps.now))) throw notFound();
}

// ── The public proxy ───────────────────────────────────────────────────────────────────────────

export type Served =
  | { kind: "body"; object: R2ObjectBody; contentType: string; sha256: string }
  | { kind: "head" | "not_modified"; object: R2Object; contentType: string; sha256: string }
  | { kind: "gone" }
  | { kind: "missing" };

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison; `*` matches any current representation. */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(",").some((t) => {
    const tag = t.trim().replace(/^W\//, "");
    return tag === "*" || tag === etag;
  });
}

export const etagOf = (sha256: string): string => `"${sha256}"`;

/**
 * What `/i/{id}` answers: the object (or its metadata, for HEAD and a matching If-None-Match), or
 * whether the image was deleted.
 */
export async function serveImage(
  db: Db,
  bucket: R2Bucket,
  id: string,
  variant: "original" | "thumbnail",
  opts: { head: boolean; ifNoneMatch: string | undefined },
): Promise<Served> {
  if (!IMAGE_ID.test(id)) return { kind: "missing" };
  const key = variant === "thumbnail" ? thumbnailKey(id) : originalKey(id);
  const object: R2Object | R2ObjectBody | null = opts.head ? await bucket.head(key) : await bucket.get(key);
  if (!object) {
    return (await imageStateById(db, id)) === "deleted" ? { kind: "gone" } : { kind: "missing" };
  }
  const stored = object.httpMetadata?.contentType ?? "";
  // Only ever one of the four image types; anything else (never written by this module) is opaque bytes.
  const contentType = isImageType(stored) ? stored : "application/octet-stream";
  const sha256 = object.customMetadata?.["sha256"] ?? "";
  const body = "body" in object ? (object as R2ObjectBody) : null;
  if (noneMatch(opts.ifNoneMatch, etagOf(sha256))) {
    await body?.body.cancel();
    return { kind: "not_modified", object, contentType, sha256 };
  }
  if (!body) return { kind: "head", object, contentType, sha256 };
  return { kind: "body", object: body, contentType, sha256 };
}
