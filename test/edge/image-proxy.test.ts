/**
 * The external image proxy `/i/p/{token}?u=…` in workerd (edge/src/surfaces/public/image-proxy.ts,
 * services/image-proxy.ts; docs/api/images.md#the-image-proxy): a token signed for one URL serves
 * that image with the sniffed type; a tampered token or another URL is 400, not a token 404; loopback,
 * private and metadata targets — literal, by name, or behind a redirect — are refused before any
 * request reaches them; an answer that is not a whole image, or is too big, is a 502.
 *
 * DNS and the Internet are the two things a test in workerd cannot have, so they are stood in for
 * (as in the webhook delivery tests): a table of DNS answers and the upstream hosts' handlers, each
 * request recorded so a test can show a refused host was never contacted.
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { fetchProxiedImage } from "../../edge/src/services/image-proxy.ts";
import { parseAllowlist, type Allowlist } from "../../edge/src/services/webhook-ssrf.ts";
import { imageProxyTransport } from "../../edge/src/surfaces/public/image-proxy.ts";
import { createImageProxySigner, type ImageProxySigner } from "../../shared/tracking/image-proxy-token.ts";
import { deriveTrackingKey } from "../../shared/tracking/token.ts";
import { encodeGif, encodePng } from "./image-fixtures.ts";
import {
  call,
  mailBody,
  openLink,
  operatorHeaders,
  resetHub,
  sendOne,
  setupTenant,
  type LinkClient,
} from "./helpers.ts";

let signer: ImageProxySigner;
beforeAll(async () => {
  signer = createImageProxySigner(await deriveTrackingKey(env.TRACKING_SECRET));
});

const png = encodePng(8, 6);
const dns: Record<string, string[]> = {
  "img.example.com": ["93.184.216.34"],
  "cdn.example.net": ["2606:2800:220:1:248:1893:25c8:1946"],
  "rebind.example.com": ["127.0.0.1"],
  "mixed.example.com": ["93.184.216.34", "10.1.2.3"],
};
type Handler = (req: Request) => Response;
let hosts: Record<string, Handler> = {};
let requested: string[] = [];
const net = {
  resolve: async (h: string) => dns[h] ?? [],
  fetch: async (req: Request) => {
    requested.push(req.url);
    const h = hosts[new URL(req.url).host];
    if (!h) throw new Error(`no route to ${new URL(req.url).host}`);
    return h(req);
  },
};

beforeAll(() => {
  imageProxyTransport.override = net;
});
afterEach(() => {
  hosts = {};
  requested = [];
});

async function proxyPath(url: string): Promise<string> {
  return `/i/p/${await signer.sign("tenant-a", url)}?u=${encodeURIComponent(url)}`;
}

describe("GET /i/p/{token}", () => {
  it("serves the signed URL's image with the sniffed type, a day's caching and nosniff", async () => {
    hosts["img.example.com"] = (req) => {
      expect(req.method).toBe("GET");
      // The upstream's Content-Type is not what is served: the bytes are.
      return new Response(png, { headers: { "content-type": "application/octet-stream" } });
    };
    const res = await call(await proxyPath("https://img.example.com/logo.png?v=2"));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/png");
    expect(res.headers.get("cache-control")).toBe("public, max-age=86400");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("content-security-policy")).toBe("default-src 'none'");
    expect(res.headers.get("content-length")).toBe(String(png.length));
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(png);
    expect(requested).toEqual(["https://img.example.com/logo.png?v=2"]);
  });

  it("follows a redirect to another public host (IPv6), keeps a shorter upstream max-age, answers HEAD without a body", async () => {
    const gif = encodeGif(4, 4);
    hosts["img.example.com"] = () =>
      new Response(null, { status: 302, headers: { location: "http://cdn.example.net/a.gif" } });
    hosts["cdn.example.net"] = () =>
      new Response(gif, { headers: { "cache-control": "public, max-age=600" } });
    const path = await proxyPath("https://img.example.com/a");
    const res = await call(path);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/gif");
    expect(res.headers.get("cache-control")).toBe("public, max-age=600");
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(gif);
    const head = await call(path, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-type")).toBe("image/gif");
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it("a token is bound to its URL: tampered or re-aimed is 400, not a token 404, and nothing is fetched", async () => {
    hosts["img.example.com"] = () => new Response(png);
    const url = "https://img.example.com/logo.png";
    const token = await signer.sign("tenant-a", url);
    const other = encodeURIComponent("https://img.example.com/other.png");
    const reAimed = await call(`/i/p/${token}?u=${other}`);
    expect(reAimed.status).toBe(400);
    expect(reAimed.headers.get("cache-control")).toBe("no-store");
    expect(((await reAimed.json()) as { detail: string }).detail).toMatch(/signature does not match/);
    const last = token.at(-1) === "A" ? "B" : "A";
    expect((await call(`/i/p/${token.slice(0, -1)}${last}?u=${encodeURIComponent(url)}`)).status).toBe(400);
    // Another tenant in the claims with the old tag.
    const [, tag] = token.split(".");
    const forgedClaims = btoa(JSON.stringify(["p", "tenant-b"])).replace(/=+$/, "");
    expect((await call(`/i/p/${forgedClaims}.${tag}?u=${encodeURIComponent(url)}`)).status).toBe(400);
    expect((await call(`/i/p/${token}`)).status).toBe(400); // no u
    expect((await call(`/i/p/${token}?u=${encodeURIComponent("javascript:alert(1)")}`)).status).toBe(400);
    expect((await call(`/i/p/not-a-token?u=${encodeURIComponent(url)}`)).status).toBe(404);
    expect(requested).toEqual([]);
  });

  it("refuses loopback, private and metadata targets, by address, by name and behind a redirect, before contacting them", async () => {
    hosts["img.example.com"] = () =>
      new Response(null, { status: 301, headers: { location: "http://10.0.0.7/x.png" } });
    for (const url of [
      "http://127.0.0.1/x.png",
      "http://[::1]:8080/x.png",
      "http://169.254.169.254/latest/meta-data",
      "http://localhost/x.png",
      "https://rebind.example.com/x.png",
      "https://mixed.example.com/x.png",
      "http://[::ffff:127.0.0.1]/x.png",
    ]) {
      const res = await call(await proxyPath(url));
      expect(res.status, url).toBe(403);
      expect(((await res.json()) as { detail: string }).detail, url).toMatch(/^refused: /);
    }
    expect(requested).toEqual([]);
    const redirected = await call(await proxyPath("https://img.example.com/r"));
    expect(redirected.status).toBe(403);
    expect(((await redirected.json()) as { detail: string }).detail).toMatch(
      /10\.0\.0\.7 is a non-public address/,
    );
    expect(requested).toEqual(["https://img.example.com/r"]);
  });

  it("refuses an answer that is not a whole JPEG, PNG, GIF or WebP, whatever its Content-Type says, and upstream errors", async () => {
    hosts["img.example.com"] = (req) => {
      const p = new URL(req.url).pathname;
      if (p === "/page.png")
        return new Response("<html><script>alert(1)</script></html>", {
          headers: { "content-type": "image/png" },
        });
      if (p === "/cut.png")
        return new Response(png.slice(0, png.length - 20), { headers: { "content-type": "image/png" } });
      if (p === "/svg")
        return new Response('<svg xmlns="http://www.w3.org/2000/svg"/>', {
          headers: { "content-type": "image/svg+xml" },
        });
      return new Response("no", { status: 404 });
    };
    for (const p of ["/page.png", "/cut.png", "/svg"]) {
      const res = await call(await proxyPath(`https://img.example.com${p}`));
      expect(res.status, p).toBe(502);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      expect(((await res.json()) as { detail: string }).detail, p).toMatch(/not a JPEG, PNG, GIF or WebP/);
    }
    const missing = await call(await proxyPath("https://img.example.com/gone.png"));
    expect(missing.status).toBe(502);
    expect(((await missing.json()) as { detail: string }).detail).toBe("the image's host answered HTTP 404");
  });
});

describe("fetchProxiedImage (the guard and the caps)", () => {
  const withAllow = (allow: Allowlist) => ({ ...net, allow });

  it("a name resolving to 127.0.0.1 is refused without an allowlist and fetched with one", async () => {
    hosts["rebind.example.com"] = () => new Response(png);
    const refused = await fetchProxiedImage("http://rebind.example.com/x.png", net);
    expect(refused).toMatchObject({ ok: false, status: 403 });
    expect(requested).toEqual([]);
    const allow = parseAllowlist("127.0.0.0/8");
    if (typeof allow === "string") throw new Error(allow);
    const ok = await fetchProxiedImage("http://rebind.example.com/x.png", withAllow(allow));
    expect(ok).toMatchObject({ ok: true, type: "image/png" });
    expect(requested).toEqual(["http://rebind.example.com/x.png"]);
  });

  it("refuses a Content-Length over the cap before reading, and a body that grows past it", async () => {
    let pulled = 0;
    hosts["img.example.com"] = (req) => {
      if (new URL(req.url).pathname === "/declared")
        return new Response(png, { headers: { "content-length": String(png.length) } });
      // No Content-Length: a stream of chunks that would go on for 1 MB.
      return new Response(
        new ReadableStream({
          pull(ctl) {
            pulled++;
            if (pulled > 256) ctl.close();
            else ctl.enqueue(new Uint8Array(4096));
          },
        }),
      );
    };
    const cap = png.length - 1;
    expect(await fetchProxiedImage("https://img.example.com/declared", { ...net, maxBytes: cap })).toEqual({
      ok: false,
      status: 502,
      detail: `the image is over ${cap} bytes`,
    });
    const streamed = await fetchProxiedImage("https://img.example.com/stream", { ...net, maxBytes: 10_000 });
    expect(streamed).toEqual({ ok: false, status: 502, detail: "the image is over 10000 bytes" });
    expect(pulled).toBeLessThan(10);
  });

  it("stops after three redirects", async () => {
    let n = 0;
    hosts["img.example.com"] = () => new Response(null, { status: 302, headers: { location: `/r${++n}` } });
    expect(await fetchProxiedImage("https://img.example.com/r0", net)).toEqual({
      ok: false,
      status: 502,
      detail: "more than 3 redirects",
    });
    expect(requested).toHaveLength(4);
  });
});

describe("image_embed_mode, a tenant tracking default", () => {
  let link: LinkClient | null = null;
  afterEach(async () => {
    link?.close();
    link = null;
    await resetHub();
  });

  it("is proxy by default, takes proxy | cid (anything else 422), and a cid tenant's jobs say so", async () => {
    const t = await setupTenant();
    const path = `/api/admin/tenants/${t.tenantId}/tracking`;
    const put = (body: unknown) =>
      call(path, { method: "PUT", headers: operatorHeaders(), body: JSON.stringify(body) });
    const initial = (await (await call(path, { headers: operatorHeaders() })).json()) as {
      data: Record<string, unknown>;
    };
    expect(initial.data.image_embed_mode).toBe("proxy");
    for (const bad of ["inline", true, null, "CID"]) {
      const res = await put({ image_embed_mode: bad });
      expect(res.status, String(bad)).toBe(422);
      expect(JSON.stringify(await res.json())).toContain("image_embed_mode");
    }
    const set = (await (await put({ image_embed_mode: "cid" })).json()) as { data: Record<string, unknown> };
    expect(set.data).toMatchObject({ image_embed_mode: "cid", open_tracking_enabled: true });
    // Additive: another key later keeps the mode.
    const later = (await (await put({ ganalytics_enabled: false })).json()) as {
      data: Record<string, unknown>;
    };
    expect(later.data.image_embed_mode).toBe("cid");

    await resetHub();
    link = await openLink();
    await link.hello(10);
    await sendOne(t.liveKey, mailBody(t.from, { tracking_settings: { click_tracking: { enable: false } } }));
    const [job] = await link.jobs(1, 5000);
    expect(job!.message.tracking).toEqual({ open: {}, images: { mode: "cid" } });

    await put({ image_embed_mode: "proxy" });
    await sendOne(t.liveKey, mailBody(t.from, { tracking_settings: { click_tracking: { enable: false } } }));
    const [second] = await link.jobs(1, 5000);
    expect(second!.message.tracking).toEqual({ open: {} });
  });
});
