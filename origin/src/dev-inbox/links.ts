// Link and image check: lists the URLs a message's HTML points at, the way Mailpit's link check
// view starts, without fetching any of them (opening a message must never call out).
//
// A tag scanner rather than a full HTML parser: it reads `href` on <a>/<area>, `src`/`srcset` on
// <img> and <source>, and the legacy `background` attribute (still used by email templates on
// <body>/<table>/<td>). Entities in attribute values are decoded for the common cases (&amp;,
// &quot;, &#39;, numeric), which is what templates emit.

export interface LinkRef {
  /** Which element and attribute the URL came from, e.g. "a href", "img src". */
  kind: string;
  url: string;
}

const TAG = /<(a|area|img|source|body|table|td|th)\b((?:[^>"']|"[^"]*"|'[^']*')*)>/gi;
const ATTR = /([^\s"'=<>/]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))/g;

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|amp|quot|apos|lt|gt|#39);/gi, (_, e: string) => {
    const lower = e.toLowerCase();
    if (lower.startsWith("#x")) return String.fromCodePoint(Number.parseInt(lower.slice(2), 16) || 0xfffd);
    if (lower.startsWith("#")) return String.fromCodePoint(Number(lower.slice(1)) || 0xfffd);
    return { amp: "&", quot: '"', apos: "'", lt: "<", gt: ">" }[lower] ?? _;
  });
}

export function extractLinks(html: string): { links: LinkRef[]; images: LinkRef[] } {
  const links: LinkRef[] = [];
  const images: LinkRef[] = [];
  const seen = new Set<string>();
  const add = (list: LinkRef[], kind: string, raw: string) => {
    const url = decodeEntities(raw).trim();
    if (!url || seen.has(`${kind}\n${url}`)) return;
    seen.add(`${kind}\n${url}`);
    list.push({ kind, url });
  };
  for (const tag of html.matchAll(TAG)) {
    const name = (tag[1] ?? "").toLowerCase();
    for (const attr of (tag[2] ?? "").matchAll(ATTR)) {
      const attrName = (attr[1] ?? "").toLowerCase();
      const value = attr[2] ?? attr[3] ?? attr[4] ?? "";
      if ((name === "a" || name === "area") && attrName === "href") add(links, `${name} href`, value);
      else if ((name === "img" || name === "source") && attrName === "src") add(images, `${name} src`, value);
      else if ((name === "img" || name === "source") && attrName === "srcset") {
        // HTML §4.8.4.2.1: comma-separated candidates, each a URL then an optional descriptor.
        for (const candidate of value.split(",")) {
          const url = candidate.trim().split(/\s+/)[0];
          if (url) add(images, `${name} srcset`, url);
        }
      } else if (attrName === "background" && name !== "a" && name !== "area")
        add(images, `${name} background`, value);
    }
  }
  return { links, images };
}
