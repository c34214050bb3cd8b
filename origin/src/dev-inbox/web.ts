// node:http front end of the dev inbox: two HTML pages, the raw source and a small JSON API.
//
// Dev mail holds password-reset links and the like, so even a loopback tool gets basic hygiene:
//  - a strict CSP on every response (the message HTML iframe inherits it, so remote images,
//    scripts and fonts never load);
//  - a Host allow-list against DNS rebinding, since a page on the internet can otherwise point its
//    own name at 127.0.0.1 and read this API same-origin;
//  - the one form (Clear all) refuses cross-site posts; DELETE needs a CORS preflight we never grant.
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { renderDetail, renderList, renderNotFound } from "./render.ts";
import type { MessageStore } from "./store.ts";
import type { StoredMessage } from "./types.ts";

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
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
}

export interface WebServer {
  port: number;
  close(): Promise<void>;
}

const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "[::1]"]);
const ALL_INTERFACES = new Set(["0.0.0.0", "::", "[::]"]);

export async function startWeb(opts: WebOptions): Promise<WebServer> {
  const { store } = opts;
  const allowedHosts = new Set([...LOOPBACK_NAMES, opts.host.includes(":") ? `[${opts.host}]` : opts.host]);
  // Bound to every interface (e.g. inside a container) the reachable names are unknowable.
  const checkHost = !ALL_INTERFACES.has(opts.host);

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
      const all = store.list();
      return send(res, 200, "text/html; charset=utf-8", renderList(all, all.length));
    }
    if (path === "/clear" && method === "POST") {
      if (isCrossSite(req)) return send(res, 403, "text/plain; charset=utf-8", "Cross-site request refused");
      store.clear();
      res.writeHead(303, { ...securityHeaders(), location: "/" }).end();
      return;
    }
    if (parts[0] === "messages" && parts[1] !== undefined && isRead(method)) {
      const m = store.get(parts[1]);
      if (parts.length === 2) {
        return m
          ? send(res, 200, "text/html; charset=utf-8", renderDetail(m, store.list().length))
          : send(res, 404, "text/html; charset=utf-8", renderNotFound());
      }
      if (parts.length === 3 && parts[2] === "raw") {
        return m
          ? send(res, 200, "text/plain; charset=utf-8", m.raw)
          : send(res, 404, "text/plain; charset=utf-8", "Not found");
      }
    }
    if (parts[0] === "api" && parts[1] === "messages") {
      if (parts.length === 2 && isRead(method))
        return sendJson(res, 200, { messages: store.list().map(toSummaryJson) });
      if (parts.length === 2 && method === "DELETE") {
        store.clear();
        res.writeHead(204, securityHeaders()).end();
        return;
      }
      if (parts.length === 3 && parts[2] !== undefined && isRead(method)) {
        const m = store.get(parts[2]);
        return m
          ? sendJson(res, 200, toDetailJson(m))
          : sendJson(res, 404, { error: { code: "not_found", message: "message not found" } });
      }
    }
    send(res, 404, "text/plain; charset=utf-8", "Not found");
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
  return {
    ...toSummaryJson(m),
    dkim: m.dkim,
    headers: m.headers,
    text: m.text,
    html: m.html,
    attachments: m.attachments,
    parseError: m.parseError,
    rawUrl: `/messages/${encodeURIComponent(m.id)}/raw`,
  };
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
