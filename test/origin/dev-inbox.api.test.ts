// The dev inbox's JSON API, SSE stream and per-message actions (docs/dev-inbox.md), against a real
// inbox on loopback: nodemailer submits over SMTP, fetch reads the HTTP side.
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, test } from "vitest";
import { OriginConfigSchema } from "../../origin/src/config.ts";
import type { DevInbox } from "../../origin/src/dev-inbox/index.ts";
import { submitOne, useInboxes } from "./dev-inbox.helpers.ts";

const inbox = useInboxes();
const send = submitOne;

interface Summary {
  id: string;
  subject: string;
}
interface ListBody {
  total: number;
  start: number;
  count: number;
  messages: Summary[];
}

async function list(i: DevInbox, qs = ""): Promise<ListBody> {
  const res = await fetch(`${i.url}/api/messages${qs}`);
  expect(res.status).toBe(200);
  return (await res.json()) as ListBody;
}

/** Reads SSE events off a real HTTP connection until `count` have arrived. */
function collectEvents(i: DevInbox, count: number) {
  const events: Array<{ event: string; data: Record<string, unknown> }> = [];
  let buffer = "";
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  let finish: () => void = () => {};
  const done = new Promise<typeof events>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${events.length} of ${count} events`)), 5_000);
    const req = request(`${i.url}/api/events`, (res) => {
      expect(res.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffer += chunk;
        if (buffer.includes(": connected\n\n")) onReady();
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
          if (events.length >= count) finish();
        }
      });
    });
    finish = () => {
      clearTimeout(timer);
      req.destroy();
      resolve(events);
    };
    req.on("error", (err) => {
      if (events.length < count) reject(err);
    });
    req.end();
  });
  return { ready, done };
}

describe("dev inbox JSON API", () => {
  test("search over from / to / subject / body with field prefixes, and paging", async () => {
    const i = await inbox();
    await send(i, {
      from: "alice@shop.example",
      to: "bob@example.org",
      subject: "Your order",
      text: "tracking number 42",
    });
    await send(i, {
      from: "news@blog.example",
      to: "carol@example.org",
      subject: "Weekly digest",
      html: "<p>Read about ORDERS</p>",
    });
    await send(i, {
      from: "alice@shop.example",
      to: "dave@example.org",
      subject: "Password reset",
      text: "click here",
    });

    expect((await list(i)).total).toBe(3);
    expect((await list(i, "?query=order")).messages.map((m) => m.subject)).toEqual([
      "Weekly digest",
      "Your order",
    ]);
    expect((await list(i, "?query=subject:order")).messages.map((m) => m.subject)).toEqual(["Your order"]);
    expect((await list(i, "?query=from:alice")).messages.map((m) => m.subject)).toEqual([
      "Password reset",
      "Your order",
    ]);
    expect((await list(i, "?query=to:dave")).messages.map((m) => m.subject)).toEqual(["Password reset"]);
    expect((await list(i, `?query=${encodeURIComponent('"tracking number" alice')}`)).messages).toHaveLength(
      1,
    );
    expect((await list(i, "?query=from:alice+digest")).total).toBe(0);

    const page1 = await list(i, "?limit=2");
    expect(page1).toMatchObject({ total: 3, start: 0, count: 2 });
    expect(page1.messages.map((m) => m.subject)).toEqual(["Password reset", "Weekly digest"]);
    const page2 = await list(i, "?limit=2&start=2");
    expect(page2).toMatchObject({ total: 3, start: 2, count: 1 });
    expect(page2.messages.map((m) => m.subject)).toEqual(["Your order"]);

    for (const bad of ["?limit=0", "?limit=501", "?start=-1", "?limit=abc"]) {
      const res = await fetch(`${i.url}/api/messages${bad}`);
      expect(res.status, bad).toBe(400);
      expect(await res.json(), bad).toMatchObject({ error: { code: "bad_request" } });
    }
  });

  test("get one parsed, raw source, and attachments by index with their exact bytes", async () => {
    const i = await inbox();
    const pdf = Buffer.from([0x25, 0x50, 0x44, 0x46, 0x00, 0xff, 0x10, 0x80]);
    await send(i, {
      from: "a@example.com",
      to: "r@example.org",
      subject: "with files",
      text: "see attached",
      html: "<p>see attached</p>",
      attachments: [
        { filename: "report.pdf", content: pdf, contentType: "application/pdf" },
        { filename: 'évil".html', content: "<script>alert(1)</script>", contentType: "text/html" },
      ],
    });
    const [summary] = (await list(i)).messages;
    if (!summary) throw new Error("not stored");
    const detail = (await (await fetch(`${i.url}/api/messages/${summary.id}`)).json()) as Record<
      string,
      unknown
    >;
    expect(detail).toMatchObject({
      subject: "with files",
      html: "<p>see attached</p>",
      dkim: { result: "none", signatures: [{ result: "none" }] },
      attachments: [
        {
          index: 0,
          filename: "report.pdf",
          contentType: "application/pdf",
          size: pdf.length,
          url: `/api/messages/${summary.id}/attachments/0`,
        },
        {
          index: 1,
          filename: 'évil".html',
          contentType: "text/html",
          url: `/api/messages/${summary.id}/attachments/1`,
        },
      ],
    });
    expect(detail.headers).toContainEqual({ name: "Subject", value: "with files" });

    const a0 = await fetch(`${i.url}/api/messages/${summary.id}/attachments/0`);
    expect(a0.status).toBe(200);
    expect(a0.headers.get("content-type")).toBe("application/pdf");
    expect(a0.headers.get("content-disposition")).toBe(
      `attachment; filename="report.pdf"; filename*=UTF-8''report.pdf`,
    );
    expect(Buffer.from(await a0.arrayBuffer()).equals(pdf)).toBe(true);

    const a1 = await fetch(`${i.url}/api/messages/${summary.id}/attachments/1`);
    expect(a1.headers.get("content-disposition")).toBe(
      `attachment; filename="_vil_.html"; filename*=UTF-8''%C3%A9vil%22.html`,
    );
    // An HTML attachment opened anyway gets an opaque origin and no scripts (CSP sandbox).
    expect(a1.headers.get("content-security-policy")).toMatch(/; sandbox$/);
    expect(await a1.text()).toBe("<script>alert(1)</script>");

    expect((await fetch(`${i.url}/api/messages/${summary.id}/attachments/2`)).status).toBe(404);
    expect((await fetch(`${i.url}/api/messages/${summary.id}/attachments/x`)).status).toBe(404);
    expect((await fetch(`${i.url}/api/messages/nope/attachments/0`)).status).toBe(404);

    const raw = await fetch(`${i.url}/api/messages/${summary.id}/raw`);
    expect(raw.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(Buffer.from(await raw.arrayBuffer()).equals(i.get(summary.id)?.raw ?? Buffer.alloc(0))).toBe(true);
  });

  test("a known path with another method is a JSON 405 with Allow; an unknown API path a JSON 404", async () => {
    const i = await inbox();
    const post = await fetch(`${i.url}/api/messages`, { method: "POST", body: "{}" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD, DELETE");
    expect(await post.json()).toMatchObject({ error: { code: "method_not_allowed" } });
    const delRaw = await fetch(`${i.url}/api/messages/x/raw`, { method: "DELETE" });
    expect(delRaw.status).toBe(405);
    expect(delRaw.headers.get("allow")).toBe("GET, HEAD");
    const unknown = await fetch(`${i.url}/api/nothing`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: "not_found" } });
  });

  test("DELETE one removes only that message; an unknown id is a 404", async () => {
    const i = await inbox();
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "keep", text: "x" });
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "drop", text: "x" });
    const [drop, keep] = (await list(i)).messages;
    if (!drop || !keep) throw new Error("not stored");
    expect(drop.subject).toBe("drop");
    expect((await fetch(`${i.url}/api/messages/${drop.id}`, { method: "DELETE" })).status).toBe(204);
    expect((await fetch(`${i.url}/api/messages/${drop.id}`)).status).toBe(404);
    expect((await fetch(`${i.url}/api/messages/${drop.id}`, { method: "DELETE" })).status).toBe(404);
    expect((await list(i)).messages.map((m) => m.subject)).toEqual(["keep"]);
  });

  test("POST /messages/:id/delete deletes same-origin and refuses a cross-site form", async () => {
    const i = await inbox();
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "one", text: "x" });
    const id = i.list()[0]?.id ?? "";
    const cross = await fetch(`${i.url}/messages/${id}/delete`, {
      method: "POST",
      headers: { "sec-fetch-site": "cross-site" },
      redirect: "manual",
    });
    expect(cross.status).toBe(403);
    expect(i.get(id)).toBeDefined();
    const same = await fetch(`${i.url}/messages/${id}/delete`, {
      method: "POST",
      headers: { "sec-fetch-site": "same-origin" },
      redirect: "manual",
    });
    expect(same.status).toBe(303);
    expect(same.headers.get("location")).toBe("/");
    expect(i.get(id)).toBeUndefined();
  });

  test("/api/events streams new, delete (incl. retention eviction) and clear", async () => {
    const i = await inbox({ maxMessages: 1 });
    const stream = collectEvents(i, 4);
    await stream.ready;
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "first", text: "x" });
    const firstId = i.list()[0]?.id;
    // Retention: the second message evicts the first, announced as a delete.
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "second", text: "x" });
    expect(i.list().map((m) => m.subject)).toEqual(["second"]);
    await fetch(`${i.url}/api/messages`, { method: "DELETE" });
    const events = await stream.done;
    expect(events.map((e) => e.event)).toEqual(["new", "delete", "new", "clear"]);
    expect(events[0]?.data).toMatchObject({ id: firstId, subject: "first", count: 1 });
    expect(events[1]?.data).toEqual({ id: firstId, count: 1 });
    expect(events[2]?.data).toMatchObject({ subject: "second", count: 1 });
    expect(events[3]?.data).toEqual({ count: 0 });
  });
});

describe("dev inbox event stream limit", () => {
  test("at most 64 streams are open at once; a closed one frees its slot", async () => {
    const i = await inbox();
    const open = (): Promise<{ status: number; close: () => void }> =>
      new Promise((resolve, reject) => {
        const req = request(`${i.url}/api/events`, { agent: false }, (res) => {
          resolve({ status: res.statusCode ?? 0, close: () => req.destroy() });
          res.resume();
        });
        req.on("error", (err) => {
          if (!req.destroyed) reject(err);
        });
        req.end();
      });
    const streams = await Promise.all(Array.from({ length: 64 }, open));
    try {
      expect(streams.every((s) => s.status === 200)).toBe(true);
      const refused = await open();
      expect(refused.status).toBe(503);
      refused.close();
      streams.pop()?.close();
      await expect
        .poll(async () => {
          const again = await open();
          again.close();
          return again.status;
        })
        .toBe(200);
    } finally {
      for (const s of streams) s.close();
    }
  });
});

describe("dev inbox retention setting", () => {
  test("DEV_INBOX_MAX_MESSAGES defaults to 500 and refuses 0, fractions and words", () => {
    const setting = OriginConfigSchema.shape.DEV_INBOX_MAX_MESSAGES;
    expect(setting.parse(undefined)).toBe(500);
    expect(setting.parse("3")).toBe(3);
    for (const bad of ["0", "1.5", "many", "100001"]) expect(setting.safeParse(bad).success, bad).toBe(false);
  });
});

describe("dev inbox pages: search, paging, views", () => {
  test("the search box filters the list and pages link to each other, keeping the query", async () => {
    const i = await inbox();
    for (const n of [1, 2, 3])
      await send(i, { from: "a@example.com", to: "r@example.org", subject: `match ${n}`, text: "x" });
    await send(i, { from: "a@example.com", to: "r@example.org", subject: "other", text: "x" });
    const html = await (await fetch(`${i.url}/?query=match&limit=2`)).text();
    expect(html).toContain('<input id="q" type="search" name="query" value="match"');
    expect(html).toContain("match 3");
    expect(html).toContain("match 2");
    expect(html).not.toContain("match 1");
    expect(html).not.toContain(">other<");
    expect(html).toContain("1–2 of 3 matching");
    expect(html).toContain('href="/?query=match&amp;start=2&amp;limit=2" rel="next"');
    const page2 = await (await fetch(`${i.url}/?query=match&start=2&limit=2`)).text();
    expect(page2).toContain("match 1");
    expect(page2).toContain('href="/?query=match&amp;limit=2" rel="prev"');
    const none = await (await fetch(`${i.url}/?query=${encodeURIComponent("<b>zzz")}`)).text();
    expect(none).toContain("No messages match <strong>&lt;b&gt;zzz</strong>");
    expect((await fetch(`${i.url}/?limit=9999`)).status).toBe(400);
  });

  test("links & images view lists the HTML's URLs without fetching them", async () => {
    const i = await inbox();
    await send(i, {
      from: "a@example.com",
      to: "r@example.org",
      subject: "links",
      html: `<body background="https://img.example/bg.png"><a href="https://shop.example/?a=1&amp;b=2">Shop</a>
<img src="https://img.example/logo.png" srcset="https://img.example/logo2x.png 2x, https://img.example/logo3x.png 3x">
<a href='mailto:help@example.com'>help</a><a href="https://shop.example/?a=1&amp;b=2">again</a></body>`,
    });
    const id = i.list()[0]?.id ?? "";
    const html = await (await fetch(`${i.url}/messages/${id}?view=links`)).text();
    expect(html).toContain("<h3>Links (2)</h3>");
    expect(html).toContain("<td>a href</td><td>https://shop.example/?a=1&amp;b=2</td>");
    expect(html).toContain("<td>a href</td><td>mailto:help@example.com</td>");
    expect(html).toContain("<h3>Images (4)</h3>");
    expect(html).toContain("<td>img srcset</td><td>https://img.example/logo3x.png</td>");
    expect(html).toContain("<td>body background</td><td>https://img.example/bg.png</td>");
  });

  test("the link check asks each http(s) link and image once and reports its answer; inline images need no request", async () => {
    // A real site on loopback: every answer the check must tell apart.
    const hits: string[] = [];
    const site = createServer((req, res) => {
      hits.push(`${req.method} ${req.url}`);
      if (req.url === "/ok" || req.url === "/logo.png") return void res.writeHead(200).end("fine");
      if (req.url === "/gone") return void res.writeHead(404).end();
      if (req.url === "/moved") return void res.writeHead(301, { location: "/ok" }).end();
      if (req.url === "/no-head")
        return void res.writeHead(req.method === "HEAD" ? 405 : 200, { allow: "GET" }).end();
      if (req.url === "/slow") return void setTimeout(() => res.writeHead(200).end(), 2_000);
      res.writeHead(500).end();
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const base = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    try {
      const i = await inbox({ linkCheck: { timeoutMs: 500 } });
      await send(i, {
        from: "a@example.com",
        to: "r@example.org",
        subject: "links to check",
        html: `<a href="${base}/ok">ok</a> <a href="${base}/ok">twice</a> <a href="${base}/gone">gone</a>
<a href="${base}/moved">moved</a> <a href="${base}/no-head">no head</a> <a href="${base}/slow">slow</a>
<a href="http://127.0.0.1:${closedPort}/">closed</a> <a href="mailto:help@example.com">mail</a>
<img src="${base}/logo.png"> <img src="cid:nowhere@example"> <img src="cid:logo@example">`,
        attachments: [{ filename: "logo.png", content: Buffer.from("png"), cid: "logo@example" }],
      });
      const id = i.list()[0]!.id;
      // Opening the message, the links view included, asks nothing.
      expect((await fetch(`${i.url}/messages/${id}?view=links`)).status).toBe(200);
      expect(hits).toEqual([]);

      const res = await fetch(`${i.url}/api/messages/${id}/link-check`, { method: "POST" });
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        total: number;
        broken: number;
        links: {
          group: string;
          kind: string;
          url: string;
          outcome: string;
          status: number | null;
          detail: string | null;
        }[];
      };
      const byUrl = (url: string) => body.links.find((l) => l.url === url);
      expect(byUrl(`${base}/ok`)).toMatchObject({
        group: "link",
        kind: "a href",
        outcome: "ok",
        status: 200,
        detail: null,
      });
      expect(byUrl(`${base}/gone`)).toMatchObject({
        outcome: "broken",
        status: 404,
        detail: "HTTP 404 Not Found",
      });
      expect(byUrl(`${base}/moved`)).toMatchObject({ outcome: "ok", status: 200 });
      expect(byUrl(`${base}/no-head`)).toMatchObject({ outcome: "ok", status: 200 });
      expect(byUrl(`${base}/slow`)).toMatchObject({
        outcome: "broken",
        status: null,
        detail: "no answer within 500 ms",
      });
      expect(byUrl(`http://127.0.0.1:${closedPort}/`)).toMatchObject({
        outcome: "broken",
        detail: "ECONNREFUSED",
      });
      expect(byUrl("mailto:help@example.com")).toMatchObject({
        outcome: "skipped",
        detail: "mailto: is not checked",
      });
      expect(byUrl(`${base}/logo.png`)).toMatchObject({
        group: "image",
        kind: "img src",
        outcome: "ok",
        status: 200,
      });
      expect(byUrl("cid:nowhere@example")).toMatchObject({ group: "image", outcome: "broken", status: null });
      // The part the message has was inlined by the parser: a data: image, the message's own.
      expect(body.links.find((l) => l.url.startsWith("data:"))).toMatchObject({
        group: "image",
        outcome: "ok",
      });
      expect(body).toMatchObject({ total: 10, broken: 4 });
      expect(body.links).toHaveLength(10);
      // One request a URL (HEAD; GET only after a 405), redirects followed.
      expect(hits.filter((h) => h.endsWith(" /ok"))).toEqual(["HEAD /ok", "HEAD /ok"]); // once itself, once for /moved
      expect(hits.filter((h) => h.endsWith(" /no-head"))).toEqual(["HEAD /no-head", "GET /no-head"]);
      expect(hits.filter((h) => h.endsWith(" /gone"))).toEqual(["HEAD /gone"]);

      // The page's button: the same check, shown in the links view.
      const page = await fetch(`${i.url}/messages/${id}/link-check`, { method: "POST" });
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('<p id="link-check-summary">10 links and images, 4 broken.</p>');
      expect(html).toContain('<span class="badge b-fail">404</span>');
      // Cross-site posts are refused; another method is a 405; an unknown message a 404.
      const before = hits.length;
      const cross = { method: "POST", headers: { "sec-fetch-site": "cross-site" } };
      expect((await fetch(`${i.url}/api/messages/${id}/link-check`, cross)).status).toBe(403);
      expect((await fetch(`${i.url}/messages/${id}/link-check`, cross)).status).toBe(403);
      expect(hits.length).toBe(before);
      const get = await fetch(`${i.url}/api/messages/${id}/link-check`);
      expect(get.status).toBe(405);
      expect(get.headers.get("allow")).toBe("POST");
      expect((await fetch(`${i.url}/api/messages/nope/link-check`, { method: "POST" })).status).toBe(404);
    } finally {
      site.closeAllConnections();
      await new Promise((resolve) => site.close(resolve));
    }
  });
});
