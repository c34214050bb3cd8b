/**
 * The image library through the Worker in workerd (docs/api/images.md): multipart uploads to R2 with
 * the type sniffed from the bytes, the list with folders, search and pages, changes, deletes, the
 * public /i/ URL (cache headers, ETag/304, thumbnails, 410 after a delete) and tenant isolation.
 * Every image is real bytes made in the test (test/edge/image-fixtures.ts, photon for JPEG/WebP).
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { Permission } from "../../shared/permissions.ts";
import { sweepBlobDays } from "../../edge/src/services/blobs.ts";
import { call, createApiKey, createTenant } from "./helpers.ts";
import { encodeGif, encodePng } from "./image-fixtures.ts";

interface ImageView {
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
  created_at: string;
  updated_at: string;
}

const ALL: Permission[] = ["templates.read", "templates.write", "templates.delete"];

async function tenantKey(scopes: Permission[] = ALL): Promise<{ tenantId: string; key: string }> {
  const tenantId = await createTenant();
  const { key } = await createApiKey(tenantId, { scopes });
  return { tenantId, key };
}

const auth = (key: string, extra: Record<string, string> = {}) => ({
  Authorization: `Bearer ${key}`,
  ...extra,
});

function upload(
  key: string,
  bytes: Uint8Array<ArrayBuffer>,
  name: string,
  opts: { type?: string; alt_text?: string; folder?: string; extra?: Record<string, string> } = {},
): Promise<Response> {
  const form = new FormData();
  form.append("file", new File([bytes], name, { type: opts.type ?? "application/octet-stream" }));
  if (opts.alt_text !== undefined) form.append("alt_text", opts.alt_text);
  if (opts.folder !== undefined) form.append("folder", opts.folder);
  for (const [k, v] of Object.entries(opts.extra ?? {})) form.append(k, v);
  return call("/v3/images", { method: "POST", headers: auth(key), body: form });
}

async function uploaded(key: string, bytes: Uint8Array<ArrayBuffer>, name: string, opts = {}) {
  const res = await upload(key, bytes, name, opts);
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as ImageView;
}

const pathOf = (url: string) => {
  const u = new URL(url);
  return u.pathname + u.search;
};

async function sha256Hex(bytes: ArrayBuffer | Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function decodedSize(bytes: ArrayBuffer): Promise<[number, number]> {
  const { PhotonImage } = await import("@cf-wasm/photon/workerd");
  const img = PhotonImage.new_from_byteslice(new Uint8Array(bytes));
  const size: [number, number] = [img.get_width(), img.get_height()];
  img.free();
  return size;
}

async function photonEncode(kind: "jpeg" | "webp", w: number, h: number): Promise<Uint8Array<ArrayBuffer>> {
  const { PhotonImage } = await import("@cf-wasm/photon/workerd");
  const img = PhotonImage.new_from_byteslice(encodePng(w, h));
  const out = kind === "jpeg" ? img.get_bytes_jpeg(85) : img.get_bytes_webp();
  img.free();
  return new Uint8Array(out);
}

describe("POST /v3/images", () => {
  let key: string;
  beforeAll(async () => {
    ({ key } = await tenantKey());
  });

  it("a PNG named .exe and sent as application/octet-stream is stored as the PNG it is", async () => {
    const png = encodePng(64, 48);
    const img = await uploaded(key, png, "logo.exe", { alt_text: "Our logo", folder: "brand" });
    expect(img).toMatchObject({
      filename: "logo.png",
      original_filename: "logo.exe",
      content_type: "image/png",
      size: png.byteLength,
      width: 64,
      height: 48,
      alt_text: "Our logo",
      folder: "brand",
    });
    expect(img.id).toMatch(/^img_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(img.url).toBe(`https://edge.test/i/${img.id}`);
    expect(img.thumbnail_url).toBe(`https://edge.test/i/${img.id}?variant=thumbnail`);
    expect(Date.parse(img.created_at)).toBeGreaterThan(Date.now() - 60_000);
    const stored = await env.BLOBS.get(`images/${img.id}/original`);
    expect(new Uint8Array(await stored!.arrayBuffer())).toEqual(png);
  });

  it("an HTML file named .png and sent as image/png is refused with a 400", async () => {
    const html = new Uint8Array(new TextEncoder().encode("<!doctype html><script>alert(1)</script>"));
    const res = await upload(key, html, "photo.png", { type: "image/png" });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { detail: string };
    expect(body.detail).toMatch(/only JPEG, PNG, GIF and WebP/);
  });

  it("a file over 10 MB is a 413, and so is a body that says it is", async () => {
    const big = new Uint8Array(10 * 1024 * 1024 + 1);
    big.set(encodePng(4, 4));
    const res = await upload(key, big, "big.png");
    expect(res.status).toBe(413);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/10 MB/);
    // A body whose Content-Length is over the limit is refused before any of it is read.
    const declared = await call("/v3/images", {
      method: "POST",
      headers: auth(key, {
        "Content-Type": "multipart/form-data; boundary=x",
        "Content-Length": String(11 * 1024 * 1024),
      }),
      body: "--x--",
    });
    expect(declared.status).toBe(413);
  });

  it("truncated or corrupted images are refused with a 400 naming the problem", async () => {
    const png = encodePng(30, 30);
    const gif = encodeGif(20, 20);
    const jpeg = await photonEncode("jpeg", 40, 30);
    const webp = await photonEncode("webp", 40, 30);
    const flipped = png.slice();
    flipped[40] = flipped[40]! ^ 0xff; // inside IDAT: its CRC no longer matches
    const cases: [Uint8Array<ArrayBuffer>, RegExp][] = [
      [png.slice(0, png.length - 20), /not a complete PNG/],
      [flipped, /CRC/],
      [gif.slice(0, gif.length - 5), /not a complete GIF/],
      [jpeg.slice(0, jpeg.length - 2), /not a complete JPEG/],
      [webp.slice(0, webp.length - 10), /not a complete WebP/],
      // Chunks whole and CRCs right, but IHDR says 31×30 for 30×30 pixels: only decoding finds it.
      [encodePng(30, 30, undefined, { width: 31, height: 30 }), /malformed image/],
    ];
    for (const [bytes, why] of cases) {
      const res = await upload(key, bytes, "broken.img");
      expect(res.status).toBe(400);
      expect(((await res.json()) as { detail: string }).detail).toMatch(why);
    }
  });

  it("an image over 3840×2160 pixels is refused before it is decoded", async () => {
    const res = await upload(key, encodePng(8, 8, undefined, { width: 5000, height: 5000 }), "huge.png");
    expect(res.status).toBe(400);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/5000×5000.*at most 8294400 pixels/);
  });

  it("accepts JPEG, GIF and WebP with their types and dimensions", async () => {
    const jpeg = await uploaded(key, await photonEncode("jpeg", 33, 21), "a.jpeg");
    expect([jpeg.content_type, jpeg.width, jpeg.height, jpeg.filename]).toEqual([
      "image/jpeg",
      33,
      21,
      "a.jpeg",
    ]);
    const gif = await uploaded(key, encodeGif(17, 9), "anim");
    expect([gif.content_type, gif.width, gif.height, gif.filename]).toEqual(["image/gif", 17, 9, "anim.gif"]);
    const webp = await uploaded(key, await photonEncode("webp", 25, 14), "../../etc/pic.WEBP");
    expect([webp.content_type, webp.width, webp.height]).toEqual(["image/webp", 25, 14]);
    expect([webp.original_filename, webp.filename]).toEqual(["pic.WEBP", "pic.WEBP"]); // its extension already fits
  });

  it("refuses a body that is not multipart, a missing file, a repeated file and unknown fields", async () => {
    const json = await call("/v3/images", {
      method: "POST",
      headers: auth(key, { "Content-Type": "application/json" }),
      body: "{}",
    });
    expect(json.status).toBe(415);
    const form = new FormData();
    form.append("alt_text", "no file");
    const missing = await call("/v3/images", { method: "POST", headers: auth(key), body: form });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { detail: string }).detail).toBe("file is required");
    const two = new FormData();
    two.append("file", new File([encodePng(2, 2)], "a.png"));
    two.append("file", new File([encodePng(2, 2)], "b.png"));
    expect((await call("/v3/images", { method: "POST", headers: auth(key), body: two })).status).toBe(400);
    const unknown = await upload(key, encodePng(2, 2), "a.png", { extra: { public: "true" } });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { detail: string }).detail).toMatch(/public is not a known field/);
  });

  it("needs templates.write to upload and templates.read to list", async () => {
    const { key: readOnly } = await tenantKey(["templates.read"]);
    const res = await upload(readOnly, encodePng(2, 2), "a.png");
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ detail: "Missing required scope: templates.write" });
    const { key: sendOnly } = await tenantKey(["mail.send"]);
    expect((await call("/v3/images", { headers: auth(sendOnly) })).status).toBe(403);
    expect((await call("/v3/images")).status).toBe(401);
  });
});

describe("GET /v3/images: folders, search and pages", () => {
  it("filters by folder, searches file names and alt text, pages, and lists the folders", async () => {
    const { key } = await tenantKey();
    const a = await uploaded(key, encodePng(3, 3), "logo-dark.png", {
      folder: "brand",
      alt_text: "Dark logo",
    });
    const b = await uploaded(key, encodePng(3, 4), "logo_light.png", { folder: "brand" });
    const c = await uploaded(key, encodePng(3, 5), "header.png", { folder: "news", alt_text: "50% off" });
    const list = async (q: string) => {
      const res = await call(`/v3/images${q}`, { headers: auth(key) });
      expect(res.status, await res.clone().text()).toBe(200);
      return (await res.json()) as { result: ImageView[]; total: number; page: number; page_size: number };
    };
    const all = await list("");
    expect(all.result.map((r) => r.id)).toEqual([c.id, b.id, a.id]);
    expect([all.total, all.page, all.page_size]).toEqual([3, 1, 25]);
    expect((await list("?folder=brand")).result.map((r) => r.id)).toEqual([b.id, a.id]);
    expect((await list("?search=LOGO")).total).toBe(2);
    expect((await list("?search=dark%20logo")).result.map((r) => r.id)).toEqual([a.id]);
    // LIKE's wildcards match themselves: "_" is only in logo_light, "%" only in c's alt text.
    expect((await list("?search=_")).result.map((r) => r.id)).toEqual([b.id]);
    expect((await list("?search=%25")).result.map((r) => r.id)).toEqual([c.id]);
    const page2 = await list("?page=2&page_size=2");
    expect(page2.result.map((r) => r.id)).toEqual([a.id]);
    expect([page2.total, page2.page, page2.page_size]).toEqual([3, 2, 2]);
    const folders = await call("/v3/images/folders", { headers: auth(key) });
    expect(await folders.json()).toEqual({ folders: ["brand", "news"] });

    for (const bad of ["?page_size=101", "?page=0", "?sort=name"]) {
      const res = await call(`/v3/images${bad}`, { headers: auth(key) });
      expect(res.status).toBe(422);
      expect(Array.isArray(((await res.json()) as { detail: unknown }).detail)).toBe(true);
    }
  });
});

describe("GET, PATCH and DELETE /v3/images/{id}", () => {
  it("reads, renames, moves and re-describes an image; unknown fields are refused", async () => {
    const { key } = await tenantKey();
    const img = await uploaded(key, encodePng(5, 5), "a.png", { folder: "old" });
    const got = await call(`/v3/images/${img.id}`, { headers: auth(key) });
    expect(await got.json()).toEqual(img);
    const patch = (body: unknown) =>
      call(`/v3/images/${img.id}`, {
        method: "PATCH",
        headers: auth(key, { "Content-Type": "application/json" }),
        body: JSON.stringify(body),
      });
    const moved = await patch({ folder: "new", alt_text: "A", filename: "renamed.png" });
    expect(moved.status).toBe(200);
    expect(await moved.json()).toMatchObject({
      folder: "new",
      alt_text: "A",
      filename: "renamed.png",
      original_filename: "a.png",
    });
    const root = (await (await patch({ folder: null, alt_text: null })).json()) as ImageView;
    expect([root.folder, root.alt_text]).toEqual([null, null]);
    expect(await (await call("/v3/images/folders", { headers: auth(key) })).json()).toEqual({ folders: [] });
    expect((await patch({ content_type: "text/html" })).status).toBe(422);
    expect((await patch({})).status).toBe(422);
    expect((await patch({ filename: "../x.png" })).status).toBe(400);
  });

  it("another tenant's image is a 404 to read, change and delete, and absent from its list", async () => {
    const { key: mine } = await tenantKey();
    const { key: theirs } = await tenantKey();
    const img = await uploaded(mine, encodePng(5, 5), "secret.png", { folder: "private" });
    expect((await call(`/v3/images/${img.id}`, { headers: auth(theirs) })).status).toBe(404);
    const patch = await call(`/v3/images/${img.id}`, {
      method: "PATCH",
      headers: auth(theirs, { "Content-Type": "application/json" }),
      body: JSON.stringify({ folder: "stolen" }),
    });
    expect(patch.status).toBe(404);
    expect((await call(`/v3/images/${img.id}`, { method: "DELETE", headers: auth(theirs) })).status).toBe(
      404,
    );
    const list = (await (await call("/v3/images", { headers: auth(theirs) })).json()) as { total: number };
    expect(list.total).toBe(0);
    expect(await (await call("/v3/images/folders", { headers: auth(theirs) })).json()).toEqual({
      folders: [],
    });
    // Still there, unchanged, for its owner.
    expect(await (await call(`/v3/images/${img.id}`, { headers: auth(mine) })).json()).toMatchObject({
      folder: "private",
    });
  });
});

describe("GET /i/{image_id}", () => {
  let key: string;
  beforeAll(async () => {
    ({ key } = await tenantKey());
  });

  it("serves the bytes with immutable caching, a strong ETag, nosniff and the sniffed type", async () => {
    const png = encodePng(20, 10);
    const img = await uploaded(key, png, "pixel.html");
    const res = await call(pathOf(img.url));
    expect(res.status).toBe(200);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(png);
    const etag = `"${await sha256Hex(png)}"`;
    expect(Object.fromEntries(res.headers)).toMatchObject({
      "content-type": "image/png",
      "content-length": String(png.byteLength),
      "cache-control": "public, max-age=31536000, immutable",
      etag,
      "x-content-type-options": "nosniff",
    });

    for (const inm of [etag, `W/${etag}`, `"nope", ${etag}`, "*"]) {
      const cached = await call(pathOf(img.url), { headers: { "If-None-Match": inm } });
      expect(cached.status).toBe(304);
      expect(cached.headers.get("etag")).toBe(etag);
      expect(cached.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(await cached.text()).toBe("");
    }
    const other = await call(pathOf(img.url), { headers: { "If-None-Match": '"something-else"' } });
    expect(other.status).toBe(200);
    expect((await other.arrayBuffer()).byteLength).toBe(png.byteLength);

    const head = await call(pathOf(img.url), { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(png.byteLength));
    expect(head.headers.get("etag")).toBe(etag);
    expect(await head.text()).toBe("");
  });

  it("variant=thumbnail is the image shrunk to fit 200×200, decoded here to check", async () => {
    const big = await uploaded(key, encodePng(400, 300), "wide.png");
    const res = await call(pathOf(big.thumbnail_url));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/png");
    const bytes = await res.arrayBuffer();
    expect(await decodedSize(bytes)).toEqual([200, 150]);
    expect(res.headers.get("etag")).toBe(`"${await sha256Hex(bytes)}"`);
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");

    const tall = await uploaded(key, await photonEncode("jpeg", 90, 450), "tall.jpg");
    const thumb = await call(pathOf(tall.thumbnail_url));
    expect(thumb.headers.get("content-type")).toBe("image/jpeg");
    expect(await decodedSize(await thumb.arrayBuffer())).toEqual([40, 200]);

    // An image that already fits is its own thumbnail.
    const small = encodeGif(30, 20);
    const own = await uploaded(key, small, "small.gif");
    const same = await call(pathOf(own.thumbnail_url));
    expect(same.headers.get("content-type")).toBe("image/gif");
    expect(new Uint8Array(await same.arrayBuffer())).toEqual(small);

    const bad = await call(`/i/${own.id}?variant=huge`);
    expect(bad.status).toBe(400);
  });

  it("after a delete the URL and its thumbnail are 410 Gone; unknown ids are 404", async () => {
    const img = await uploaded(key, encodePng(300, 300), "gone.png");
    expect((await call(pathOf(img.thumbnail_url))).status).toBe(200);
    const del = await call(`/v3/images/${img.id}`, { method: "DELETE", headers: auth(key) });
    expect(del.status).toBe(204);
    for (const url of [img.url, img.thumbnail_url]) {
      const res = await call(pathOf(url));
      expect(res.status).toBe(410);
      expect(res.headers.get("cache-control")).toBe("no-store");
    }
    expect((await call(pathOf(img.url), { method: "HEAD" })).status).toBe(410);
    expect(await env.BLOBS.head(`images/${img.id}/original`)).toBeNull();
    expect(await env.BLOBS.head(`images/${img.id}/thumbnail`)).toBeNull();
    expect((await call(`/v3/images/${img.id}`, { headers: auth(key) })).status).toBe(404);
    expect((await call(`/v3/images/${img.id}`, { method: "DELETE", headers: auth(key) })).status).toBe(404);
    const list = (await (await call("/v3/images", { headers: auth(key) })).json()) as { result: ImageView[] };
    expect(list.result.map((r) => r.id)).not.toContain(img.id);

    // A well-formed id nobody uploaded, and ids that are not ids at all.
    const unknown = `img_${img.id.slice(4, 14)}${"0".repeat(16)}`;
    for (const id of [unknown, "img_1", "..%2Fblobs", "x"]) expect((await call(`/i/${id}`)).status).toBe(404);
  });

  it("the attachment sweeper never deletes library images, however old", async () => {
    const img = await uploaded(key, encodePng(4, 4), "kept.png");
    await env.BLOBS.put("blobs/20200101/tnt_x/abc", "an old attachment");
    const deleted = await sweepBlobDays(env.BLOBS, Date.now() + 10 * 365 * 86_400_000, 0);
    expect(deleted).toBeGreaterThanOrEqual(1);
    expect(await env.BLOBS.head("blobs/20200101/tnt_x/abc")).toBeNull();
    expect((await call(pathOf(img.url))).status).toBe(200);
    expect((await call(pathOf(img.thumbnail_url))).status).toBe(200);
  });

  it("needs no credentials and answers the same for any caller", async () => {
    const img = await uploaded(key, encodePng(4, 4), "p.png");
    const res = await call(pathOf(img.url), { headers: { Authorization: "Bearer nonsense" } });
    expect(res.status).toBe(200);
  });
});
