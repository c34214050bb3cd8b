// Link and image check on demand (docs/dev-inbox.md#link-and-image-check), as Mailpit's link check
// does: each http(s) link and image of a message's HTML is requested once (HEAD, or GET where the
// server refuses HEAD) and its answer reported. Only when a user asks (a same-origin POST), never on
// opening a message. Inline images need no request: a `data:` image is the message's own part
// (mailparser inlines `cid:` references it can resolve), a `cid:` one left over names a part the
// message lacks.
import { extractLinks } from "./links.ts";
import type { LinkRef } from "./links.ts";

export interface LinkCheck extends LinkRef {
  /** "link" or "image". */
  group: "link" | "image";
  /** ok: a 2xx answer (after redirects); broken: another answer or no answer; skipped: not fetched. */
  outcome: "ok" | "broken" | "skipped";
  /** The final HTTP status, or null when there was none. */
  status: number | null;
  /** Why it is broken or skipped (a network error, a timeout, "mailto: is not checked", …). */
  detail: string | null;
}

export interface LinkCheckOptions {
  /** Per URL, in ms (default 5 s). */
  timeoutMs?: number;
  /** Requests at once (default 4). */
  concurrency?: number;
  /** URLs checked at most (default 200); the rest are reported as skipped. */
  maxUrls?: number;
  fetcher?: typeof fetch;
}

const USER_AGENT = "ScaiSend-dev-inbox-link-check";

/** What each link and image of `html` answers now; the same URL is requested once. */
export async function checkLinks(html: string, opts: LinkCheckOptions = {}): Promise<LinkCheck[]> {
  const { links, images } = extractLinks(html);
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const maxUrls = opts.maxUrls ?? 200;
  const fetcher = opts.fetcher ?? fetch;
  const all: LinkCheck[] = [
    ...links.map((l) => ({ ...l, group: "link" as const })),
    ...images.map((l) => ({ ...l, group: "image" as const })),
  ].map((l) => ({ ...l, outcome: "skipped" as const, status: null, detail: null }));

  const pending = new Map<string, LinkCheck[]>();
  for (const item of all) {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(item.url)?.[1]?.toLowerCase();
    if (scheme === "http" || scheme === "https") {
      const same = pending.get(item.url);
      if (same) same.push(item);
      else if (pending.size < maxUrls) pending.set(item.url, [item]);
      else item.detail = `not checked: more than ${maxUrls} URLs`;
    } else if (item.group === "image" && scheme === "data") {
      Object.assign(item, { outcome: "ok", detail: "inline: the message's own part" });
    } else if (item.group === "image" && scheme === "cid") {
      Object.assign(item, { outcome: "broken", detail: "inline part missing: no part has this Content-ID" });
    } else {
      item.detail = scheme ? `${scheme}: is not checked` : "relative URL: not checked";
    }
  }

  const queue = [...pending.entries()];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [url, items] = next;
      const answer = await probe(url, timeoutMs, fetcher);
      for (const item of items) Object.assign(item, answer);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
  return all;
}

async function probe(
  url: string,
  timeoutMs: number,
  fetcher: typeof fetch,
): Promise<Pick<LinkCheck, "outcome" | "status" | "detail">> {
  const once = async (method: "HEAD" | "GET") => {
    const res = await fetcher(url, {
      method,
      redirect: "follow",
      headers: { "user-agent": USER_AGENT },
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Only the status is wanted: a GET's body is not read.
    await res.body?.cancel().catch(() => undefined);
    return res;
  };
  try {
    let res = await once("HEAD");
    // RFC 9110 §9.3.2 lets a server refuse HEAD; ask with GET before calling the link broken.
    if (res.status === 405 || res.status === 501) res = await once("GET");
    const ok = res.status >= 200 && res.status < 300;
    return {
      outcome: ok ? "ok" : "broken",
      status: res.status,
      detail: ok ? null : `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`,
    };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const reason =
      e.name === "TimeoutError"
        ? `no answer within ${timeoutMs} ms`
        : (e.cause?.code ?? e.cause?.message ?? e.message);
    return { outcome: "broken", status: null, detail: reason };
  }
}
