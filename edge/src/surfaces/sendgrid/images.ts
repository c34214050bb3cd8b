/**
 * `/v3/images` (docs/api/images.md): the tenant's image library. FastAPI `{"detail"}` errors, as
 * ScaiSend documents for this family; 400 for a file that is not a JPEG, PNG, GIF or WebP image or
 * is malformed, 413 over 10 MB, 404 for an id the tenant does not have. The permission is not named
 * by the product docs; images are template content, so reads need `templates.read`, uploads and
 * changes `templates.write`, deletes `templates.delete` (shared/permissions.ts).
 * Upload is `multipart/form-data` with `file`, `alt_text`, `folder`; any other part is refused.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { authenticate } from "../../middleware/auth.ts";
import { routePermission } from "../route-permissions.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import {
  altText,
  changeImage,
  deleteImage,
  folderName,
  imageView,
  listTenantImages,
  MAX_ALT_TEXT_LENGTH,
  MAX_FILENAME_LENGTH,
  MAX_FOLDER_LENGTH,
  MAX_IMAGE_BYTES,
  readImage,
  renamed,
  tenantFolders,
  uploadImage,
} from "../../services/images.ts";
import { renderFastApi } from "../errors.ts";
import { parseInput, readJson } from "../validate.ts";

/** Room for the multipart boundaries, part headers and the two text fields beside the file. */
const MULTIPART_OVERHEAD = 64 * 1024;
const MAX_BODY = MAX_IMAGE_BYTES + MULTIPART_OVERHEAD;
const UPLOAD_FIELDS = ["file", "alt_text", "folder"];

const ListQuery = z
  .object({
    folder: z.string().max(MAX_FOLDER_LENGTH).optional(),
    search: z.string().max(200).optional(),
    page: z.coerce.number().int().min(1).max(1_000_000).default(1),
    page_size: z.coerce.number().int().min(1).max(100).default(25),
  })
  .strict();

const PatchBody = z
  .object({
    alt_text: z.string().max(MAX_ALT_TEXT_LENGTH).nullable().optional(),
    folder: z.string().max(MAX_FOLDER_LENGTH).nullable().optional(),
    filename: z.string().max(MAX_FILENAME_LENGTH).optional(),
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, "give at least one of alt_text, folder, filename");

const tenantOf = (c: Context<AppEnv>): string => {
  const p = c.get("principal");
  if (p.kind === "operator") throw new AppError("forbidden", "Images belong to a tenant: use its API key");
  return p.tenantId;
};

/** Where recipients reach `/i/`: PUBLIC_URL when set (docs/configuration.md), else the host called. */
const publicBase = (c: Context<AppEnv>): string =>
  (c.get("config").PUBLIC_URL ?? new URL(c.req.url).origin).replace(/\/+$/, "");

const tooLarge = () =>
  new AppError("payload_too_large", `The image is larger than ${MAX_IMAGE_BYTES} bytes (10 MB)`);

/** The request body, refused with a 413 as soon as it passes MAX_BODY (never buffered past it). */
async function boundedBody(c: Context<AppEnv>): Promise<Uint8Array<ArrayBuffer>> {
  const declared = Number(c.req.header("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > MAX_BODY) throw tooLarge();
  const reader = c.req.raw.body?.getReader();
  if (!reader) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > MAX_BODY) {
      await reader.cancel();
      throw tooLarge();
    }
    parts.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The one value of a text part, or null when absent; a file there, or a repeated part, is a 400. */
function textPart(form: FormData, name: string): string | null {
  const all = form.getAll(name);
  if (all.length === 0) return null;
  if (all.length > 1) throw new AppError("invalid_request", `${name} may be given once`);
  const v = all[0];
  if (typeof v !== "string") throw new AppError("invalid_request", `${name} must be a text field`);
  return v;
}

async function readUpload(c: Context<AppEnv>) {
  const type = c.req.header("content-type") ?? "";
  if (!/^multipart\/form-data\s*;/i.test(type)) {
    throw new AppError("unsupported_media_type", "The body must be multipart/form-data with a file part");
  }
  const body = await boundedBody(c);
  let form: FormData;
  try {
    form = await new Response(body, { headers: { "content-type": type } }).formData();
  } catch {
    throw new AppError("invalid_request", "The body is not valid multipart/form-data");
  }
  for (const name of new Set(form.keys())) {
    if (!UPLOAD_FIELDS.includes(name))
      throw new AppError("invalid_request", `${name} is not a known field (file, alt_text, folder)`);
  }
  const files = form.getAll("file");
  if (files.length === 0) throw new AppError("invalid_request", "file is required");
  if (files.length > 1) throw new AppError("invalid_request", "file may be given once");
  const file = files[0]!;
  if (typeof file === "string") throw new AppError("invalid_request", "file must be a file part");
  if (file.size > MAX_IMAGE_BYTES) throw tooLarge();
  return {
    bytes: new Uint8Array(await file.arrayBuffer()),
    originalFilename: file.name,
    altText: altText(textPart(form, "alt_text")),
    folder: folderName(textPart(form, "folder")),
  };
}

export const imagesApi = new Hono<AppEnv>()
  .use(authenticate())
  .use(rateLimit(RATE_LIMITS.images))
  .get("/", routePermission(), async (c) => {
    const q = parseInput(ListQuery, c.req.query(), "query");
    const { rows, total } = await listTenantImages(
      c.get("db"),
      tenantOf(c),
      {
        ...(q.folder !== undefined ? { folder: q.folder } : {}),
        ...(q.search !== undefined && q.search !== "" ? { search: q.search } : {}),
      },
      q.page,
      q.page_size,
    );
    const base = publicBase(c);
    return c.json({
      result: rows.map((r) => imageView(r, base)),
      total,
      page: q.page,
      page_size: q.page_size,
    });
  })
  .post("/", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    const input = await readUpload(c);
    const row = await uploadImage({ db: c.get("db"), bucket: c.env.BLOBS, now: Date.now() }, tenantId, input);
    return c.json(imageView(row, publicBase(c)), 201);
  })
  .get("/folders", routePermission(), async (c) => {
    return c.json({ folders: await tenantFolders(c.get("db"), tenantOf(c)) });
  })
  .get("/:id", routePermission(), async (c) => {
    const row = await readImage(c.get("db"), tenantOf(c), c.req.param("id"));
    return c.json(imageView(row, publicBase(c)));
  })
  .patch("/:id", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    const body = parseInput(PatchBody, await readJson(c.req.raw), "body");
    const row = await changeImage(
      c.get("db"),
      tenantId,
      c.req.param("id"),
      {
        ...(body.alt_text !== undefined ? { altText: altText(body.alt_text) } : {}),
        ...(body.folder !== undefined ? { folder: folderName(body.folder) } : {}),
        ...(body.filename !== undefined ? { filename: renamed(body.filename) } : {}),
      },
      Date.now(),
    );
    return c.json(imageView(row, publicBase(c)));
  })
  .delete("/:id", routePermission(), async (c) => {
    const tenantId = tenantOf(c);
    await deleteImage({ db: c.get("db"), bucket: c.env.BLOBS, now: Date.now() }, tenantId, c.req.param("id"));
    return c.body(null, 204);
  });
imagesApi.onError(renderFastApi);
