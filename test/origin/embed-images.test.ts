/**
 * image_embed_mode at the origin (origin/src/compose/embed-images.ts; docs/api/images.md#image_embed_mode):
 * external images become the edge's signed proxy URL in both modes; in `cid` mode the edge's library
 * images are fetched from a real HTTP server on loopback (standing in for the edge's public /i/ route)
 * and embedded as inline parts of multipart/related, read back with mailparser; an image that cannot
 * be fetched or is over the caps keeps its URL, with a warning, and the message is still built.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { simpleParser } from "mailparser";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { createImageProxySigner } from "../../shared/tracking/image-proxy-token.ts";
import type { JobTracking } from "../../shared/tracking/settings.ts";
import { base64url, deriveTrackingKey } from "../../shared/tracking/token.ts";
import { composeMessage } from "../../origin/src/compose/compose.ts";
import { embedImages, MAX_CID_BYTES, MAX_CID_IMAGES } from "../../origin/src/compose/embed-images.ts";
import type { TrackedJob } from "../../origin/src/compose/tracking.ts";
import { encodePng } from "../edge/image-fixtures.ts";

const key = await deriveTrackingKey("test-tracking-secret-0123456789abcdef");
const proxySigner = createImageProxySigner(key);

const id = (n: number) =>
  `img_01JDQ3Z5N6W2D5E8XKXG3B7R${String(n).padStart(2, "0").replace(/0/g, "A").replace(/1/g, "B")}`;
const LOGO = id(1);
const BANNER = id(2);
const MISSING = id(3);
const DELETED = id(4);
const BIG_A = id(5);
const BIG_B = id(6);
const logo = encodePng(12, 8);
const logoThumb = encodePng(6, 4);
const banner = encodePng(20, 5);
const big = new Uint8Array(3 * 1024 * 1024).fill(7);

let server: Server;
let BASE = "";
let hits: string[] = [];
beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push(req.url!);
    const u = new URL(req.url!, "http://x");
    const m = /^\/i\/(img_[0-9A-Z]{26})$/.exec(u.pathname);
    const thumb = u.searchParams.get("variant") === "thumbnail";
    const send = (type: string, body: Uint8Array) => {
      res.writeHead(200, { "content-type": type, "content-length": body.length });
      res.end(body);
    };
    if (m?.[1] === LOGO) return send("image/png", thumb ? logoThumb : logo);
    if (m?.[1] === BANNER) return send("image/png", banner);
    if (m?.[1] === BIG_A || m?.[1] === BIG_B) return send("image/jpeg", big);
    if (m?.[1]?.startsWith("img_01JDQ3Z5N6W2D5E8XKXG3B7RC")) return send("image/gif", logo);
    res.writeHead(m?.[1] === DELETED ? 410 : 404, { "content-type": "application/json" });
    res.end('{"detail":"no"}');
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  BASE = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
beforeEach(() => {
  hits = [];
});

function job(html: string, tracking: JobTracking, extra: Partial<TrackedJob> = {}): TrackedJob {
  return {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "tnt_1",
    attempt: 1,
    recipients: ["ann@example.net"],
    message: {
      from: { email: "news@example.com" },
      to: [{ email: "ann@example.net" }],
      subject: "Hi",
      headers: {},
      messageIdHeader: "msg_1@example.com",
      text: "Hi",
      html,
      tracking,
    } as DeliveryJob["message"],
    dkim: null,
    trackingContext: { key: base64url(key), baseUrl: BASE },
    ...extra,
  };
}

const proxied = async (url: string) =>
  `${BASE}/i/p/${await proxySigner.sign("tnt_1", url)}?u=${encodeURIComponent(url)}`;

describe("proxy mode (the default)", () => {
  it("rewrites external <img src> to the signed proxy URL and leaves library, data:, cid:, relative and templated sources", async () => {
    const ext = "https://cdn.example.org/p.png?a=1&b=2";
    const html = [
      `<html><body>`,
      `<img alt="x" src="https://cdn.example.org/p.png?a=1&amp;b=2" width="10">`,
      `<img src='http://img.example.com/q.gif'>`,
      `<IMG SRC=https://img.example.com/r.webp>`,
      `<img src="${BASE}/i/${LOGO}">`,
      `<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">`,
      `<img src="cid:own@part">`,
      `<img src="/relative.png">`,
      `<img src="{{logo}}">`,
      `<img alt="no src">`,
      `</body></html>`,
    ].join("\n");
    const out = await embedImages(job(html, { open: {} }));
    const amp = (s: string) => s.replace(/&/g, "&amp;");
    expect(out.message.html).toBe(
      [
        `<html><body>`,
        `<img alt="x" src="${amp(await proxied(ext))}" width="10">`,
        `<img src="${amp(await proxied("http://img.example.com/q.gif"))}">`,
        `<IMG SRC="${amp(await proxied("https://img.example.com/r.webp"))}">`,
        `<img src="${BASE}/i/${LOGO}">`,
        `<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">`,
        `<img src="cid:own@part">`,
        `<img src="/relative.png">`,
        `<img src="{{logo}}">`,
        `<img alt="no src">`,
        `</body></html>`,
      ].join("\n"),
    );
    expect(out.message.attachments).toBeUndefined();
    expect(hits).toEqual([]); // proxy mode fetches nothing
    // The token in the message proxies exactly that URL.
    const [, token, u] = /\/i\/p\/([^?]+)\?u=([^"]+)"/.exec(out.message.html!)!;
    expect(await proxySigner.verify(token!, decodeURIComponent(u!))).toEqual({
      ok: true,
      tenantId: "tnt_1",
      url: ext,
    });
    expect((await proxySigner.verify(token!, "https://cdn.example.org/other.png")).ok).toBe(false);
  });

  it("the composed message keeps the open pixel on the edge's host unproxied; without a context nothing changes", async () => {
    const raw = await composeMessage(
      job(`<p><img src="https://x.example.com/a.png"></p></body>`, { open: {} }),
    );
    const parsed = await simpleParser(raw);
    expect(parsed.html).toContain(
      `src="${(await proxied("https://x.example.com/a.png")).replace(/&/g, "&amp;")}"`,
    );
    expect(parsed.html).toMatch(new RegExp(`<img src="${BASE}/t/o/[^"]+\\.gif"`));
    const { trackingContext: _c, ...noCtx } = job(`<img src="https://x.example.com/a.png">`, { open: {} });
    expect((await embedImages(noCtx)).message.html).toBe(`<img src="https://x.example.com/a.png">`);
  });
});

describe("cid mode", () => {
  const cid = { open: {}, images: { mode: "cid" } } as const satisfies JobTracking;

  it("embeds each library image once as an inline related part, named by cid:, with the bytes the edge served", async () => {
    const html = [
      `<html><body>`,
      `<img src="${BASE}/i/${LOGO}" alt="logo">`,
      `<img src="${BASE}/i/${LOGO}?variant=thumbnail">`,
      `<img src="${BASE}/i/${BANNER}">`,
      `<img src="${BASE}/i/${LOGO}">`,
      `<img src="https://cdn.example.org/p.png">`,
      `</body></html>`,
    ].join("\n");
    const raw = await composeMessage(job(html, cid));
    expect(hits.sort()).toEqual([`/i/${BANNER}`, `/i/${LOGO}`, `/i/${LOGO}?variant=thumbnail`].sort());
    const parsed = await simpleParser(raw);
    expect(raw.toString("latin1")).toMatch(/Content-Type: multipart\/related/i);
    const parts = parsed.attachments.map((a) => ({
      cid: a.contentId,
      type: a.contentType,
      disposition: a.contentDisposition,
      related: a.related,
      bytes: new Uint8Array(a.content),
    }));
    expect(parts).toEqual([
      { cid: `<${LOGO}@scaisend>`, type: "image/png", disposition: "inline", related: true, bytes: logo },
      {
        cid: `<${LOGO}.thumbnail@scaisend>`,
        type: "image/png",
        disposition: "inline",
        related: true,
        bytes: logoThumb,
      },
      { cid: `<${BANNER}@scaisend>`, type: "image/png", disposition: "inline", related: true, bytes: banner },
    ]);
    // The text/html part itself names the parts by cid: (mailparser's .html would inline them).
    const source = raw.toString("latin1").replace(/=\r\n/g, "").replace(/=3D/g, "=");
    expect(source).toContain(`<img src="cid:${LOGO}@scaisend" alt="logo">`);
    expect(source).toContain(`<img src="cid:${LOGO}.thumbnail@scaisend">`);
    expect(source).toContain(`<img src="cid:${BANNER}@scaisend">`);
    expect(source.split(`src="cid:${LOGO}@scaisend"`)).toHaveLength(3);
    expect(source).toContain(`${BASE}/i/p/`); // the external one is proxied
  });

  it("keeps the URL, with a warning, for an image that is missing, deleted or over the byte cap, and still builds the message", async () => {
    const warnings: { image?: unknown; reason?: unknown }[] = [];
    const html = [MISSING, DELETED, LOGO, BIG_A, BIG_B].map((i) => `<img src="${BASE}/i/${i}">`).join("");
    const out = await embedImages(job(html, cid), { warn: (_m, d) => warnings.push(d) });
    expect(big.length * 2).toBeGreaterThan(MAX_CID_BYTES - logo.length);
    expect(out.message.html).toBe(
      [
        `<img src="${BASE}/i/${MISSING}">`,
        `<img src="${BASE}/i/${DELETED}">`,
        `<img src="cid:${LOGO}@scaisend">`,
        `<img src="cid:${BIG_A}@scaisend">`,
        `<img src="${BASE}/i/${BIG_B}">`,
      ].join(""),
    );
    expect(warnings.map((w) => [w.image, w.reason])).toEqual([
      [MISSING, "HTTP 404"],
      [DELETED, "HTTP 410"],
      [
        BIG_B,
        `${big.length} bytes is over the message's remaining ${MAX_CID_BYTES - logo.length - big.length}`,
      ],
    ]);
    expect(out.message.attachments!.map((a) => a.contentId)).toEqual([
      `${LOGO}@scaisend`,
      `${BIG_A}@scaisend`,
    ]);
    const parsed = await simpleParser(await composeMessage(out));
    expect(parsed.attachments).toHaveLength(2);
  });

  it(`embeds at most ${MAX_CID_IMAGES} distinct images, after the message's own attachments`, async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `img_01JDQ3Z5N6W2D5E8XKXG3B7RC${"ABCDEFGHJKMN"[i]}`);
    const warnings: unknown[] = [];
    const own = new TextEncoder().encode("hello");
    const base = job(ids.map((i) => `<img src="${BASE}/i/${i}">`).join(""), cid);
    const withFile = {
      ...base,
      message: {
        ...base.message,
        attachments: [
          {
            key: `blobs/20261202/tnt_1/${"a".repeat(64)}`,
            size: own.length,
            sha256: "a".repeat(64),
            filename: "a.txt",
            type: "text/plain",
            disposition: "attachment" as const,
          },
        ],
      },
      attachmentBytes: [own],
    };
    const out = await embedImages(withFile, { warn: (m, d) => warnings.push({ m, image: d.image }) });
    expect(out.message.attachments![0]!.filename).toBe("a.txt");
    expect(out.message.attachments!.slice(1).map((a) => a.contentId)).toEqual(
      ids.slice(0, 10).map((i) => `${i}@scaisend`),
    );
    expect(out.attachmentBytes).toHaveLength(11);
    expect(out.message.html).toContain(`<img src="${BASE}/i/${ids[10]}">`);
    expect(out.message.html).toContain(`<img src="${BASE}/i/${ids[11]}">`);
    expect(warnings).toHaveLength(2);
    expect(hits).toHaveLength(10);
    const parsed = await simpleParser(await composeMessage(out));
    expect(parsed.attachments.map((a) => a.filename)).toContain("a.txt");
    expect(parsed.attachments.filter((a) => a.related)).toHaveLength(10);
  });
});
