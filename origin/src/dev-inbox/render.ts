// HTML for the inbox pages. Every string that came from a message is attacker-controlled (a
// test may well send `<script>` in a subject), so it goes through escapeHtml() — in text and in
// attribute position alike — and the message's own HTML is only ever shown inside a
// `sandbox=""` iframe via srcdoc, where it gets an opaque origin and cannot run scripts.
import { extractLinks } from "./links.ts";
import type { LinkCheck } from "./link-check.ts";
import type { LinkRef } from "./links.ts";
import { DEFAULT_PAGE_SIZE } from "./query.ts";
import type { Page } from "./query.ts";
import type { DkimSummary, StoredMessage } from "./types.ts";
export { LIVE_SCRIPT } from "./live-script.ts";

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Safe for element text and for single- or double-quoted attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

const STYLE = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f8fa}
header{display:flex;align-items:center;gap:16px;padding:12px 24px;background:#24292f;color:#fff}
header h1{margin:0;font-size:16px;font-weight:600}
header a{color:#fff;text-decoration:none}
header .count{color:#afb8c1;font-size:13px}
header .spacer{flex:1}
main{max-width:1200px;margin:0 auto;padding:20px 24px}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #d0d7de;border-radius:6px;overflow:hidden}
th,td{padding:8px 12px;text-align:left;vertical-align:top;border-bottom:1px solid #eaeef2}
th{background:#f6f8fa;font-weight:600;font-size:12px;color:#57606a;text-transform:uppercase;letter-spacing:.03em}
tr:last-child td{border-bottom:0}
.list tbody tr:hover{background:#f6f8fa}
.list{table-layout:fixed}
.list td{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.list .c-time{width:190px}.list .c-from{width:20%}.list .c-to{width:20%}.list .c-dkim{width:120px}
.list a{color:#0969da;text-decoration:none;font-weight:500}
.list a:hover{text-decoration:underline}
.muted{color:#6e7781}
.empty{padding:48px;text-align:center;color:#6e7781;background:#fff;border:1px dashed #d0d7de;border-radius:6px}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;border:1px solid transparent}
.b-pass{background:#dafbe1;color:#116329;border-color:#aceebb}
.b-fail{background:#ffebe9;color:#a40e26;border-color:#ffcecb}
.b-none{background:#eaeef2;color:#57606a;border-color:#d0d7de}
.b-other{background:#fff8c5;color:#7d4e00;border-color:#f5e0a0}
h2{font-size:20px;margin:0 0 12px;word-break:break-word}
h3{font-size:14px;margin:24px 0 8px;color:#57606a;text-transform:uppercase;letter-spacing:.03em}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;margin:0}
.meta dt{color:#57606a;font-weight:600}
.meta dd{margin:0;word-break:break-word}
.headers td:first-child{white-space:nowrap;font-weight:600;color:#57606a;width:1%}
.headers td{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
pre{margin:0;padding:12px 16px;background:#fff;border:1px solid #d0d7de;border-radius:6px;white-space:pre-wrap;word-break:break-word;font:12px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
iframe{width:100%;height:480px;border:1px solid #d0d7de;border-radius:6px;background:#fff;resize:vertical}
.actions{display:flex;gap:12px;align-items:center;margin-bottom:16px}
.actions a,button{font:inherit;font-size:13px;padding:4px 12px;border:1px solid #d0d7de;border-radius:6px;background:#fff;color:#24292f;text-decoration:none;cursor:pointer}
header button{background:transparent;color:#fff;border-color:#57606a}
form{margin:0}
.search{display:flex;gap:6px}
.search input{font:inherit;font-size:13px;padding:4px 8px;border-radius:6px;border:1px solid #57606a;min-width:280px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
.spacer{flex:1}
.pager{display:flex;gap:12px;margin-top:12px;align-items:center}
.tabs{display:flex;gap:4px;margin:24px 0 8px;border-bottom:1px solid #d0d7de}
.tab{padding:6px 12px;color:#0969da;text-decoration:none;border:1px solid transparent;border-bottom:0;border-radius:6px 6px 0 0}
.tab.current{background:#fff;border-color:#d0d7de;color:#1f2328;font-weight:600}
`;

function page0(title: string, body: string, opts: { live?: boolean } = {}): string {
  // Live pages update over Server-Sent Events via /static/inbox.js; without JavaScript they fall
  // back to a reload every 10 s (<noscript> in <head> may hold <meta>, WHATWG HTML §4.11.2).
  const live = opts.live
    ? `<script src="/static/inbox.js" defer></script><noscript><meta http-equiv="refresh" content="10"></noscript>`
    : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">${live}
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>${body}</body></html>`;
}

function topBar(count: number, query = ""): string {
  return `<header><h1><a href="/">ScaiSend dev inbox</a></h1><span class="count" id="count">${count} message${count === 1 ? "" : "s"}</span>
<form method="get" action="/" role="search" class="search"><label for="q" class="sr">Search</label><input id="q" type="search" name="query" value="${escapeHtml(query)}" placeholder="Search: words, from:, to:, subject:"><button type="submit">Search</button></form>
<span class="spacer"></span>
<form method="post" action="/clear"><button type="submit" id="clear-all">Delete all</button></form></header>`;
}

export function dkimBadge(dkim: DkimSummary): string {
  const cls =
    dkim.result === "pass"
      ? "b-pass"
      : dkim.result === "fail"
        ? "b-fail"
        : dkim.result === "none"
          ? "b-none"
          : "b-other";
  const title = dkim.comment ? ` title="${escapeHtml(dkim.comment)}"` : "";
  return `<span class="badge ${cls}"${title}>DKIM ${escapeHtml(dkim.result)}</span>`;
}

function formatTime(d: Date): string {
  return d
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "");
}

function orDash(value: string): string {
  return value ? escapeHtml(value) : `<span class="muted">—</span>`;
}

function messageHref(id: string): string {
  return `/messages/${encodeURIComponent(id)}`;
}

export interface ListOptions {
  query: string;
  limit: number;
  /** Messages in the inbox in all (the search may match fewer). */
  count: number;
}

function listHref(query: string, start: number, limit: number): string {
  const params = new URLSearchParams();
  if (query) params.set("query", query);
  if (start) params.set("start", String(start));
  if (limit !== DEFAULT_PAGE_SIZE) params.set("limit", String(limit));
  const qs = params.toString();
  return escapeHtml(qs ? `/?${qs}` : "/");
}

export function renderList(page: Page, opts: ListOptions): string {
  const { messages, total, start } = page;
  const rows = messages
    .map((m) => {
      const to = m.to || m.envelope.rcptTo.join(", ");
      return `<tr data-id="${escapeHtml(m.id)}">
<td class="muted">${escapeHtml(formatTime(m.receivedAt))}</td>
<td title="${escapeHtml(m.from)}">${orDash(m.from)}</td>
<td title="${escapeHtml(to)}">${orDash(to)}</td>
<td title="${escapeHtml(m.subject)}"><a href="${messageHref(m.id)}">${m.subject ? escapeHtml(m.subject) : `<span class="muted">(no subject)</span>`}</a>${m.attachments.length ? ` <span class="muted" title="attachments">&#128206;${m.attachments.length}</span>` : ""}</td>
<td>${dkimBadge(m.dkim)}</td>
</tr>`;
    })
    .join("\n");
  const empty = opts.query
    ? `No messages match <strong>${escapeHtml(opts.query)}</strong>. <a href="/">Show all</a>`
    : "No messages yet. Point SMTP at this inbox and they will show up here.";
  const table = messages.length
    ? `<table class="list"><colgroup><col class="c-time"><col class="c-from"><col class="c-to"><col><col class="c-dkim"></colgroup>
<thead><tr><th>Received (UTC)</th><th>From</th><th>To</th><th>Subject</th><th>DKIM</th></tr></thead><tbody>${rows}</tbody></table>`
    : `<div class="empty">${empty}</div>`;
  const prev =
    start > 0
      ? `<a href="${listHref(opts.query, Math.max(0, start - opts.limit), opts.limit)}" rel="prev">&larr; Newer</a>`
      : "";
  const next =
    start + messages.length < total
      ? `<a href="${listHref(opts.query, start + opts.limit, opts.limit)}" rel="next">Older &rarr;</a>`
      : "";
  const pager =
    total > 0
      ? `<nav class="pager"><span class="muted">${start + 1}–${start + messages.length} of ${total}${opts.query ? " matching" : ""}</span>${prev}${next}</nav>`
      : "";
  return page0(
    "Dev inbox",
    `${topBar(opts.count, opts.query)}<main><div id="inbox">${table}${pager}</div><p class="muted" id="live-status"></p></main>`,
    { live: true },
  );
}

export const VIEWS = ["html", "text", "source", "headers", "links"] as const;
export type View = (typeof VIEWS)[number];
export function isView(value: string): value is View {
  return (VIEWS as readonly string[]).includes(value);
}
const VIEW_LABELS: Record<View, string> = {
  html: "HTML",
  text: "Text",
  source: "Raw source",
  headers: "Headers",
  links: "Links &amp; images",
};

/** An inline image's data: URL can be megabytes: shown cut (the source view has it whole). */
function shortUrl(url: string): string {
  return url.startsWith("data:") && url.length > 96 ? `${url.slice(0, 80)}… (${url.length} characters)` : url;
}

function checkBadge(l: LinkCheck): string {
  const cls = l.outcome === "ok" ? "b-pass" : l.outcome === "broken" ? "b-fail" : "b-none";
  const label = l.status !== null ? String(l.status) : l.outcome === "ok" ? "ok" : l.outcome;
  return `<span class="badge ${cls}">${escapeHtml(label)}</span>`;
}

function viewBody(m: StoredMessage, view: View, checks?: LinkCheck[]): string {
  switch (view) {
    case "html":
      return m.html !== null
        ? // sandbox="" (every restriction on): no scripts, no forms, no popups, no top navigation,
          // opaque origin, so the message never runs in the inbox's origin. The srcdoc value is
          // attribute-escaped, so the markup cannot close the attribute; it also inherits this
          // page's CSP, which blocks remote images and fonts.
          `<iframe sandbox="" referrerpolicy="no-referrer" title="HTML body" srcdoc="${escapeHtml(m.html)}"></iframe>`
        : `<div class="empty">This message has no HTML part.</div>`;
    case "text":
      return m.text
        ? `<pre id="text-body">${escapeHtml(m.text)}</pre>`
        : `<div class="empty">This message has no text part.</div>`;
    case "source":
      return `<pre id="raw-source">${escapeHtml(m.raw.toString("utf8"))}</pre>`;
    case "headers":
      return `<table class="headers"><tbody>${m.headers
        .map((h) => `<tr><td>${escapeHtml(h.name)}</td><td>${escapeHtml(h.value)}</td></tr>`)
        .join("")}</tbody></table>`;
    case "links": {
      const checkForm = `<form method="post" action="${messageHref(m.id)}/link-check" class="actions"><button type="submit" id="check-links">Check links</button><span class="muted">requests each http(s) link and image once (HEAD) and shows its answer</span></form>`;
      if (checks) {
        const rows = (items: LinkCheck[]) =>
          items.length
            ? `<table class="headers links"><tbody>${items
                .map(
                  (l) =>
                    `<tr data-outcome="${l.outcome}"><td>${escapeHtml(l.kind)}</td><td>${escapeHtml(shortUrl(l.url))}</td><td>${checkBadge(l)}</td><td>${l.detail ? escapeHtml(l.detail) : ""}</td></tr>`,
                )
                .join("")}</tbody></table>`
            : `<div class="empty">None.</div>`;
        const links = checks.filter((l) => l.group === "link");
        const images = checks.filter((l) => l.group === "image");
        const broken = checks.filter((l) => l.outcome === "broken").length;
        return `${checkForm}<p id="link-check-summary">${checks.length} links and images, ${broken} broken.</p><h3>Links (${links.length})</h3>${rows(links)}<h3>Images (${images.length})</h3>${rows(images)}`;
      }
      const { links, images } = extractLinks(m.html ?? "");
      const rows = (items: LinkRef[]) =>
        items.length
          ? `<table class="headers"><tbody>${items
              .map((l) => `<tr><td>${escapeHtml(l.kind)}</td><td>${escapeHtml(shortUrl(l.url))}</td></tr>`)
              .join("")}</tbody></table>`
          : `<div class="empty">None.</div>`;
      return `${checkForm}<p class="muted">Listed from the HTML part; nothing is fetched until you check.</p><h3>Links (${links.length})</h3>${rows(links)}<h3>Images (${images.length})</h3>${rows(images)}`;
    }
  }
}

/** `checks`: the outcome of a link check just run, shown in the links view. */
export function renderDetail(m: StoredMessage, view: View, count: number, checks?: LinkCheck[]): string {
  const dkim = m.dkim;
  const href = messageHref(m.id);
  const dkimRows = dkim.signatures
    .map(
      (s) =>
        `<tr><td>${dkimBadge({ ...s, signatures: [] })}</td><td>${orDash(s.domain ?? "")}</td><td>${orDash(s.selector ?? "")}</td><td>${orDash(s.algo ?? "")}</td><td>${orDash(s.comment ?? "")}</td></tr>`,
    )
    .join("");
  const attachments = m.attachments.length
    ? `<h3>Attachments</h3><table><thead><tr><th>Filename</th><th>Type</th><th>Size</th></tr></thead><tbody>${m.attachments
        .map(
          (a, index) =>
            `<tr><td><a href="/api/messages/${encodeURIComponent(m.id)}/attachments/${index}" download>${a.filename ? escapeHtml(a.filename) : `attachment-${index}`}</a></td><td>${escapeHtml(a.contentType)}</td><td>${a.size} B</td></tr>`,
        )
        .join("")}</tbody></table>`
    : "";
  const tabs = VIEWS.map((v) =>
    v === view
      ? `<a href="${href}?view=${v}" aria-current="page" class="tab current">${VIEW_LABELS[v]}</a>`
      : `<a href="${href}?view=${v}" class="tab">${VIEW_LABELS[v]}</a>`,
  ).join("");
  const parseError = m.parseError ? `<h3>Parse error</h3><pre>${escapeHtml(m.parseError)}</pre>` : "";
  const body = `${topBar(count)}<main>
<div class="actions"><a href="/">&larr; Inbox</a><a href="${href}/raw">Download source</a><a href="/api/messages/${encodeURIComponent(m.id)}">JSON</a><span class="spacer"></span><form method="post" action="${href}/delete"><button type="submit" id="delete">Delete</button></form></div>
<h2>${m.subject ? escapeHtml(m.subject) : `<span class="muted">(no subject)</span>`}</h2>
<dl class="meta">
<dt>From</dt><dd>${orDash(m.from)}</dd>
<dt>To</dt><dd>${orDash(m.to)}</dd>
${m.cc ? `<dt>Cc</dt><dd>${escapeHtml(m.cc)}</dd>` : ""}
<dt>Envelope</dt><dd>MAIL FROM:&lt;${escapeHtml(m.envelope.mailFrom)}&gt; &rarr; ${m.envelope.rcptTo.map((r) => `&lt;${escapeHtml(r)}&gt;`).join(", ")}</dd>
<dt>Received</dt><dd>${escapeHtml(formatTime(m.receivedAt))} UTC <span class="muted">(${m.size} bytes)</span></dd>
<dt>DKIM</dt><dd>${dkimBadge(dkim)} ${dkim.domain ? `d=${escapeHtml(dkim.domain)}` : ""} ${dkim.selector ? `s=${escapeHtml(dkim.selector)}` : ""} <span class="muted">${escapeHtml(dkim.info)}</span></dd>
</dl>
${parseError}${attachments}
<nav class="tabs" aria-label="Views">${tabs}</nav>
<section id="view" data-view="${view}">${viewBody(m, view, checks)}</section>
<h3>DKIM signatures</h3><table><thead><tr><th>Result</th><th>Domain</th><th>Selector</th><th>Algorithm</th><th>Detail</th></tr></thead><tbody>${dkimRows}</tbody></table>
</main>`;
  return page0(m.subject || "(no subject)", body);
}

export function renderNotFound(): string {
  return page0(
    "Not found",
    `<main><div class="empty">Message not found (it may have been evicted or cleared). <a href="/">Back to the inbox</a></div></main>`,
  );
}
