/**
 * Tracking applied to one message where its bodies are final, before the MIME is built
 * (compose.ts; docs/api/tracking.md#what-the-origin-writes). In this order, so that no step rewrites
 * what a later one adds:
 *
 *  1. `mail_settings.footer`: its HTML before the last `</body>` (or at the end), its text after the
 *     text body.
 *  2. ganalytics: the UTM parameters the message sets are added to every http(s) link of the HTML
 *     (and of the text), a parameter the link already has is left as it is.
 *  3. click tracking: each `<a href>` with an absolute http(s) URL becomes `/t/c/{token}?u=<url>`;
 *     links marked `clicktracking=off` (SendGrid's attribute), mailto:, tel:, `#anchors` and
 *     relative or templated hrefs are left alone. With `enable_text`, the text body's http(s) URLs too.
 *  4. subscription tracking: with a `substitution_tag`, each occurrence in either body becomes the
 *     unsubscribe URL; otherwise the footer (`text` / `html`, or the defaults below), where `<% %>`
 *     marks the link (`<% click here %>` in HTML is a link with that text).
 *  5. open tracking (HTML only): the 1×1 pixel at the open `substitution_tag` when the HTML has it,
 *     else before the last `</body>`, else at the end.
 *
 * Every live message also gets `List-Unsubscribe: <…/t/u/{token}>` and `List-Unsubscribe-Post:
 * List-Unsubscribe=One-Click` (RFC 2369 §3.2, RFC 8058 §3.1), which DKIM signs (dkim.ts), unless the
 * caller set its own List-Unsubscribe header (RFC 2369 allows one). No mailto: URI is listed: nothing
 * here reads unsubscribe mail, and a listed address must work.
 *
 * Tokens (shared/tracking/token.ts) bind the personalization's first To address: one job's bytes go
 * to all of its recipients, as SendGrid tracks per personalization.
 */
import {
  createTrackingSigner,
  fromBase64url,
  isRedirectableUrl,
  type TrackingSigner,
} from "../../../shared/tracking/token.ts";
import type { JobTracking } from "../../../shared/tracking/settings.ts";
import type { ComposableJob } from "./build-mime.ts";

/** What the link's welcome handed this node (docs/link-protocol.md#tracking). */
export interface TrackingContext {
  /** The derived token key, base64url. */
  key: string;
  /** The edge's public base URL, no trailing slash, e.g. https://mail.example.com. */
  baseUrl: string;
}

/** An edge URL as the links name it: ws(s):// becomes http(s)://, no path, no trailing slash. */
export function publicBaseUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  if (u.protocol === "wss:") u.protocol = "https:";
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}`;
}

export type TrackedJob = ComposableJob & { trackingContext?: TrackingContext };

export const DEFAULT_SUBSCRIPTION_TEXT =
  "If you would like to unsubscribe and stop receiving these emails click here: <% %>.";
export const DEFAULT_SUBSCRIPTION_HTML =
  '<p style="font-size:12px;color:#555">If you would like to unsubscribe and stop receiving these emails <% click here %>.</p>';

const signers = new Map<string, TrackingSigner>();
function signerFor(key: string): TrackingSigner {
  let s = signers.get(key);
  if (!s) {
    const bytes = fromBase64url(key);
    if (!bytes || bytes.length < 32) throw new Error("the tracking key from the edge is not valid");
    s = createTrackingSigner(bytes);
    if (signers.size > 8) signers.clear();
    signers.set(key, s);
  }
  return s;
}

const escapeAttr = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const escapeText = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** The href's value as the browser reads it (the entities an href commonly holds). */
function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|quot|apos|lt|gt);/gi, (m, e: string) => {
    const l = e.toLowerCase();
    if (l === "amp") return "&";
    if (l === "quot") return '"';
    if (l === "apos") return "'";
    if (l === "lt") return "<";
    if (l === "gt") return ">";
    const code = l.startsWith("#x") ? parseInt(l.slice(2), 16) : parseInt(l.slice(1), 10);
    return Number.isFinite(code) && code > 0 && code < 0x110000 ? String.fromCodePoint(code) : m;
  });
}

/** Before the last `</body>`, else appended. */
function beforeBodyEnd(html: string, insert: string): string {
  const at = html.search(/<\/body\s*>(?![\s\S]*<\/body\s*>)/i);
  return at === -1 ? html + insert : html.slice(0, at) + insert + html.slice(at);
}

function withUtm(url: string, utm: NonNullable<JobTracking["ganalytics"]>): string {
  if (!isRedirectableUrl(url)) return url;
  const keys = Object.entries(utm).filter(([, v]) => v);
  if (keys.length === 0) return url;
  const u = new URL(url);
  let changed = false;
  for (const [k, v] of keys) {
    if (!u.searchParams.has(k)) {
      u.searchParams.append(k, v!);
      changed = true;
    }
  }
  return changed ? u.toString() : url;
}

const A_TAG = /<a\b[^>]*>/gi;
const HREF = /(\shref\s*=\s*)("([^"]*)"|'([^']*)'|([^\s"'>]+))/i;
const CLICKTRACKING_OFF = /\sclicktracking\s*=\s*["']?off\b/i;
/** http(s) URLs in plain text; trailing punctuation is not part of the URL. */
const TEXT_URL = /https?:\/\/[^\s<>"]+/g;

async function mapHrefs(
  html: string,
  f: (url: string, tag: string) => Promise<string | null>,
): Promise<string> {
  const out: string[] = [];
  let last = 0;
  for (const m of html.matchAll(A_TAG)) {
    const tag = m[0];
    const h = HREF.exec(tag);
    if (!h) continue;
    const raw = h[3] ?? h[4] ?? h[5] ?? "";
    const replaced = await f(decodeEntities(raw.trim()), tag);
    if (replaced === null) continue;
    const newTag =
      tag.slice(0, h.index) + `${h[1]}"${escapeAttr(replaced)}"` + tag.slice(h.index + h[0].length);
    out.push(html.slice(last, m.index), newTag);
    last = m.index + tag.length;
  }
  out.push(html.slice(last));
  return out.join("");
}

async function mapTextUrls(text: string, f: (url: string) => Promise<string>): Promise<string> {
  const out: string[] = [];
  let last = 0;
  for (const m of text.matchAll(TEXT_URL)) {
    let url = m[0];
    const trail = /[.,;:!?)\]'}]+$/.exec(url);
    if (trail) url = url.slice(0, -trail[0].length);
    out.push(text.slice(last, m.index), await f(url));
    last = m.index + url.length;
  }
  out.push(text.slice(last));
  return out.join("");
}

const SUB_TAG = /<%\s*([\s\S]*?)\s*%>/g;

/** The job with its tracking applied and the List-Unsubscribe headers added; unchanged without a context. */
export async function applyTracking(job: TrackedJob): Promise<ComposableJob> {
  const { trackingContext: ctx, ...rest } = job;
  const tracking = job.message.tracking;
  if (!ctx || !tracking) return rest;
  const signer = signerFor(ctx.key);
  const base = ctx.baseUrl.replace(/\/+$/, "");
  const recipient = job.message.to[0]?.email ?? job.recipients[0]!;
  const claims = { tenantId: job.tenantId, messageId: job.messageId, recipient };
  const clickUrl = async (url: string) =>
    `${base}/t/c/${await signer.sign("click", claims, url)}?u=${encodeURIComponent(url)}`;
  const unsubscribeUrl = `${base}/t/u/${await signer.sign("unsubscribe", {
    ...claims,
    asmGroupId: tracking.asm?.groupId ?? null,
    groupsToDisplay: tracking.asm?.groupsToDisplay ?? [],
  })}`;

  let html = job.message.html;
  let text = job.message.text;
  // 1. footer
  if (tracking.footer?.html && html !== undefined) html = beforeBodyEnd(html, tracking.footer.html);
  if (tracking.footer?.text && text !== undefined) text = `${text}\n\n${tracking.footer.text}`;
  // 2. ganalytics
  const ga = tracking.ganalytics;
  if (ga && Object.keys(ga).length > 0) {
    if (html !== undefined)
      html = await mapHrefs(html, async (url, tag) =>
        CLICKTRACKING_OFF.test(tag) || !isRedirectableUrl(url) ? null : withUtm(url, ga),
      );
    if (text !== undefined) text = await mapTextUrls(text, async (url) => withUtm(url, ga));
  }
  // 3. click tracking
  if (tracking.click) {
    if (html !== undefined)
      html = await mapHrefs(html, async (url, tag) =>
        CLICKTRACKING_OFF.test(tag) || !isRedirectableUrl(url) ? null : clickUrl(url),
      );
    if (text !== undefined && tracking.click.enableText)
      text = await mapTextUrls(text, async (url) => (isRedirectableUrl(url) ? clickUrl(url) : url));
  }
  // 4. subscription tracking
  const sub = tracking.subscription;
  if (sub) {
    if (sub.substitutionTag) {
      const tag = sub.substitutionTag;
      if (html !== undefined) html = html.split(tag).join(escapeAttr(unsubscribeUrl));
      if (text !== undefined) text = text.split(tag).join(unsubscribeUrl);
    } else {
      if (html !== undefined) {
        const footer = (sub.html ?? DEFAULT_SUBSCRIPTION_HTML).replace(SUB_TAG, (_m, label: string) => {
          const href = escapeAttr(unsubscribeUrl);
          return `<a href="${href}">${label ? label : escapeText(unsubscribeUrl)}</a>`;
        });
        html = beforeBodyEnd(html, footer);
      }
      if (text !== undefined) {
        const custom = sub.text ?? DEFAULT_SUBSCRIPTION_TEXT;
        const footer = /<%[\s\S]*?%>/.test(custom)
          ? custom.replace(SUB_TAG, unsubscribeUrl)
          : `${custom} ${unsubscribeUrl}`;
        text = `${text}\n\n${footer}`;
      }
    }
  }
  // 5. open pixel
  if (tracking.open && html !== undefined) {
    const src = `${base}/t/o/${await signer.sign("open", claims)}.gif`;
    const pixel = `<img src="${escapeAttr(src)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />`;
    const tag = tracking.open.substitutionTag;
    html = tag && html.includes(tag) ? html.split(tag).join(pixel) : beforeBodyEnd(html, pixel);
  }

  const { tracking: _t, ...message } = job.message;
  const headers = { ...message.headers };
  const callerSetsOwn = Object.keys(headers).some((h) => /^list-unsubscribe(-post)?$/i.test(h));
  if (!callerSetsOwn) {
    headers["List-Unsubscribe"] = `<${unsubscribeUrl}>`;
    headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click";
  }
  return {
    ...rest,
    message: {
      ...message,
      headers,
      ...(html !== undefined ? { html } : {}),
      ...(text !== undefined ? { text } : {}),
    },
  };
}
