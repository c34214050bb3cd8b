// node:http front end of the dev inbox: the HTML pages, the raw source, a JSON API for tests and a
// Server-Sent Events stream for live updates (paths in docs/dev-inbox.md).
//
// Dev mail holds password-reset links and the like, so even a loopback tool gets basic hygiene:
//  - a strict CSP on every response (the message HTML iframe inherits it, so remote images,
//    scripts and fonts never load);
//  - a Host allow-list against DNS rebinding, since a page on the internet can otherwise point its
//    own name at 127.0.0.1 and read this API same-origin;
//  - the forms (Delete, Clear all) refuse cross-site posts; DELETE needs a CORS preflight we never
//    grant;
//  - the only script is our own /static/inbox.js (`script-src 'self'`, nothing inline); the
//    message HTML runs in a `sandbox=""` iframe, which forbids scripts and has an opaque origin.
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { checkLinks } from "./link-check.ts";
import type { LinkCheck, LinkCheckOptions } from "./link-check.ts";
import { QueryError, parsePaging, search } from "./query.ts";
import type { Page } from "./query.ts";
import { LIVE_SCRIPT, isView, renderDetail, renderList, renderNotFound } from "./render.ts";
import type { MessageStore } from "./store.ts";
import type { AttachmentSummary, StoredMessage } from "./types.ts";

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "connect-src 'self'",
  "style-src 'unsafe-inline'",
  "img-src data:",
  "frame-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

export interface WebOptions {
  host: string;
  port: number;
  store: MessageStore;
  log: (msg: string, extra?: Record<string, unknown>) => void;
  /** Settings of the link check (timeouts, limits), for tests. */
  linkCheck?: LinkCheckOptions;
}

export interface WebServer {
  port: number;
  close(): Promise<void>;
}

const MAX_EVENT_STREAMS = 64;
const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "[::1]"]);
const ALL_INTERFACES = new Set(["0.0.0.0", "::", "[::]"]);

export async function startWeb(opts: WebOptions): Promise<WebServer> {
  const { store } = opts;
  const allowedHosts = new Set([...LOOPBACK_NAMES, opts.host.includes(":") ? `[${opts.host}]` : opts.host]);
  // Bound to every interface (e.g. inside a container) the reachable names are unknowable.
  const checkHost = !ALL_INTERFACES.has(opts.host);

  let streams = 0;
  const server = createServer((req, res) => {
    try {
      route(req, res);
    } catch (err) {
      opts.log("dev inbox: web handler failed", { error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) send(res, 500, "text/plain; charset=utf-8", "Internal error");
      else res.destroy();
    }
  });

  function route(req: IncomingMessage, res: ServerResponse): void {
    if (checkHost && !allowedHosts.has(hostName(req.headers.host))) {
      send(res, 421, "text/plain; charset=utf-8", "Misdirected request: unexpected Host header");
      return;
    }
    const url = new URL(req.url ?? "/", "http://dev-inbox.invalid");
    const path = url.pathname;
    const method = req.method ?? "GET";
    const parts = path.split("/").filter(Boolean).map(safeDecode);

    if (path === "/" && isRead(method)) {
      let result: { page: Page; query: string; limit: number };
      try {
        result = searchFrom(url.searchParams);
      } catch (err) {
        if (!(err instanceof QueryError)) throw err;
        return send(res, 400, "text/plain; charset=utf-8", `Bad request: ${err.message}`);
      }
      const { page, query, limit } = result;
      return send(
        res,
        200,
        "text/html; charset=utf-8",
        renderList(page, { query, limit, count: store.size }),
      );
    }
    if (path === "/static/inbox.js" && isRead(method)) {
      return send(res, 200, "text/javascript; charset=utf-8", LIVE_SCRIPT);
    }
    if (path === "/clear" && method === "POST") {
      if (isCrossSite(req)) return send(res, 403, "text/plain; charset=utf-8", "Cross-site request refused");
      store.clear();
      res.writeHead(303, { ...securityHeaders(), location: "/" }).end();
      return;
    }
    if (parts[0] === "messages" && parts[1] !== undefined) {
      const m = store.get(parts[1]);
      if (parts.length === 2 && isRead(method)) {
        const view = url.searchParams.get("view") ?? (m?.html !== null ? "html" : "text");
        if (!isView(view)) return send(res, 400, "text/plain; charset=utf-8", `Bad request: unknown view`);
        return m
          ? send(res, 200, "text/html; charset=utf-8", renderDetail(m, view, store.size))
          : send(res, 404, "text/html; charset=utf-8", renderNotFound());
      }
      if (parts.length === 3 && parts[2] === "raw" && isRead(method)) {
        return m
          ? send(res, 200, "text/plain; charset=utf-8", m.raw)
          : send(res, 404, "text/plain; charset=utf-8", "Not found");
      }
      if (parts.length === 3 && parts[2] === "link-check" && method === "POST") {
        if (isCrossSite(req))
          return send(res, 403, "text/plain; charset=utf-8", "Cross-site request refused");
        if (!m) return send(res, 404, "text/html; charset=utf-8", renderNotFound());
        return runLinkCheck(m, res, (checks) =>
          send(res, 200, "text/html; charset=utf-8", renderDetail(m, "links", store.size, checks)),
        );
      }
      if (parts.length === 3 && parts[2] === "delete" && method === "POST") {
        if (isCrossSite(req))
          return send(res, 403, "text/plain; charset=utf-8", "Cross-site request refused");
        if (!store.delete(parts[1])) return send(res, 404, "text/html; charset=utf-8", renderNotFound());
        res.writeHead(303, { ...securityHeaders(), location: "/" }).end();
        return;
      }
    }
    if (parts[0] === "api" && parts[1] === "events" && parts.length === 2 && method === "GET") {
      return openEventStream(req, res);
    }
    if (parts[0] === "api" && parts[1] === "messages") {
      if (parts.length === 2 && isRead(method)) {
        try {
          const { page } = searchFrom(url.searchParams);
          return sendJson(res, 200, {
            total: page.total,
            start: page.start,
            count: page.messages.length,
            messages: page.messages.map(toSummaryJson),
          });
        } catch (err) {
          if (!(err instanceof QueryError)) throw err;
          return sendJson(res, 400, { error: { code: "bad_request", message: err.message } });
        }
      }
      if (parts.length === 2 && method === "DELETE") {
        store.clear();
        res.writeHead(204, securityHeaders()).end();
        return;
      }
      const id = parts[2] ?? "";
      const m = store.get(id);
      if (parts.length === 3 && isRead(method))
        return m ? sendJson(res, 200, toDetailJson(m)) : notFoundJson(res);
      if (parts.length === 3 && method === "DELETE") {
        if (!store.delete(id)) return notFoundJson(res);
        res.writeHead(204, securityHeaders()).end();
        return;
      }
      if (parts.length === 4 && parts[3] === "link-check" && method === "POST") {
        if (isCrossSite(req))
          return sendJson(res, 403, { error: { code: "forbidden", message: "cross-site request refused" } });
        if (!m) return notFoundJson(res);
        return runLinkCheck(m, res, (checks) =>
          sendJson(res, 200, {
            total: checks.length,
            broken: checks.filter((c) => c.outcome === "broken").length,
            links: checks,
          }),
        );
      }
      if (parts.length === 4 && parts[3] === "raw" && isRead(method)) {
        return m ? send(res, 200, "text/plain; charset=utf-8", m.raw) : notFoundJson(res);
      }
      if (parts.length === 5 && parts[3] === "attachments" && isRead(method)) {
        const index = /^\d{1,6}$/.test(parts[4] ?? "") ? Number(parts[4]) : -1;
        const attachment = m?.attachments[index];
        const data = m?.attachmentData[index];
        if (!attachment || !data) return notFoundJson(res);
        return sendAttachment(res, attachment, data, index);
      }
    }
    if (parts[0] === "api") {
      // The API answers in its own error shape; a known path with another method is a 405 (RFC 9110 §15.5.6).
      const allow = apiAllow(parts);
      if (allow) {
        res.setHeader("allow", allow);
        return sendJson(res, 405, { error: { code: "method_not_allowed", message: `use ${allow}` } });
      }
      return sendJson(res, 404, { error: { code: "not_found", message: "no such endpoint" } });
    }
    send(res, 404, "text/plain; charset=utf-8", "Not found");
  }

  // A check runs while the request waits (seconds at worst: 5 s a URL, 4 at once); a failure of
  // the check itself is a 500, as for the synchronous handlers.
  function runLinkCheck(m: StoredMessage, res: ServerResponse, answer: (checks: LinkCheck[]) => void): void {
    checkLinks(m.html ?? "", opts.linkCheck).then(answer, (err: unknown) => {
      opts.log("dev inbox: link check failed", { error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) send(res, 500, "text/plain; charset=utf-8", "Internal error");
      else res.destroy();
    });
  }

  function searchFrom(params: URLSearchParams): { page: Page; query: string; limit: number } {
    const query = params.get("query") ?? "";
    const { start, limit } = parsePaging(params);
    return { page: search(store.list(), query, start, limit), query, limit };
  }

  // Server-Sent Events (WHATWG HTML §9.2): `new` carries the message summary, `delete` its id,
  // `clear` nothing. A comment line every 15 s keeps proxies and idle timeouts from closing it.
  function openEventStream(req: IncomingMessage, res: ServerResponse): void {
    // Bounded like any listener: a runaway script opening streams in a loop cannot exhaust memory.
    if (streams >= MAX_EVENT_STREAMS) {
      return send(res, 503, "text/plain; charset=utf-8", "Too many open event streams");
    }
    streams += 1;
    res.writeHead(200, {
      ...securityHeaders(),
      "content-type": "text/event-stream; charset=utf-8",
      connection: "keep-alive",
    });
    res.write(": connected\n\n");
    const unsubscribe = store.subscribe((event) => {
      const data =
        event.type === "new" ? toSummaryJson(event.message) : event.type === "delete" ? { id: event.id } : {};
      res.write(`event: ${event.type}\ndata: ${JSON.stringify({ ...data, count: store.size })}\n\n`);
    });
    const heartbeat = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
    heartbeat.unref();
    req.socket.on("close", () => {
      streams -= 1;
      clearInterval(heartbeat);
      unsubscribe();
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => opts.log("dev inbox: http error", { error: err.message }));

  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Keep-alive sockets (browsers, fetch) would otherwise hold close() open.
        server.closeAllConnections();
      }),
  };
}

export function toSummaryJson(m: StoredMessage) {
  return {
    id: m.id,
    receivedAt: m.receivedAt.toISOString(),
    envelope: m.envelope,
    size: m.size,
    subject: m.subject,
    from: m.from,
    to: m.to,
    cc: m.cc,
    messageId: m.messageId,
    date: m.date ? m.date.toISOString() : null,
    dkim: { result: m.dkim.result, domain: m.dkim.domain, selector: m.dkim.selector, info: m.dkim.info },
  };
}

export function toDetailJson(m: StoredMessage) {
  const base = `/api/messages/${encodeURIComponent(m.id)}`;
  return {
    ...toSummaryJson(m),
    dkim: m.dkim,
    headers: m.headers,
    text: m.text,
    html: m.html,
    attachments: m.attachments.map((a, index) => ({ index, ...a, url: `${base}/attachments/${index}` })),
    parseError: m.parseError,
    rawUrl: `/messages/${encodeURIComponent(m.id)}/raw`,
  };
}

function notFoundJson(res: ServerResponse): void {
  sendJson(res, 404, { error: { code: "not_found", message: "message not found" } });
}

/**
 * Always a download (Content-Disposition: attachment, RFC 6266) with the CSP `sandbox` directive,
 * so an HTML or SVG attachment opened anyway gets an opaque origin and no scripts.
 */
function sendAttachment(res: ServerResponse, a: AttachmentSummary, data: Buffer, index: number): void {
  const type = /^[\w.+-]+\/[\w.+-]+$/.test(a.contentType) ? a.contentType : "application/octet-stream";
  const name = a.filename ?? `attachment-${index}`;
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  res.writeHead(200, {
    ...securityHeaders(),
    "content-security-policy": `${CONTENT_SECURITY_POLICY}; sandbox`,
    "content-type": type,
    "content-length": String(data.length),
    "content-disposition": `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`,
  });
  res.end(res.req.method === "HEAD" ? undefined : data);
}

function securityHeaders(): Record<string, string> {
  return {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
  };
}

function send(res: ServerResponse, status: number, contentType: string, body: string | Buffer): void {
  const payload = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  res.writeHead(status, {
    ...securityHeaders(),
    "content-type": contentType,
    "content-length": String(payload.length),
  });
  res.end(res.req.method === "HEAD" ? undefined : payload);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json; charset=utf-8", JSON.stringify(body));
}

/** The methods a JSON API path takes, or null when it is not an API path at all. */
function apiAllow(parts: string[]): string | null {
  if (parts[1] === "events" && parts.length === 2) return "GET";
  if (parts[1] !== "messages") return null;
  if (parts.length === 2 || parts.length === 3) return "GET, HEAD, DELETE";
  if (parts.length === 4 && parts[3] === "raw") return "GET, HEAD";
  if (parts.length === 4 && parts[3] === "link-check") return "POST";
  if (parts.length === 5 && parts[3] === "attachments") return "GET, HEAD";
  return null;
}

function isRead(method: string): boolean {
  return method === "GET" || method === "HEAD";
}

function hostName(host: string | undefined): string {
  if (!host) return "";
  // "[::1]:8025" keeps its brackets; "localhost:8025" loses the port.
  const match = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(host.trim().toLowerCase());
  return match?.[1] ?? "";
}

function isCrossSite(req: IncomingMessage): boolean {
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined) return site !== "same-origin" && site !== "none";
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  try {
    return new URL(origin).host !== req.headers.host;
  } catch {
    return true;
  }
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
