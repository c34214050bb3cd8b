/**
 * plain_content from html_content, for template versions saved with `generate_plain_content: true`
 * (SendGrid: "If true, plain_content is always generated from html_content"; docs/templates.md).
 *
 * The HTML is a template, so its tags must survive: every `{{…}}` is lifted out before the HTML is
 * read and put back afterwards, untouched (entities inside a tag are not decoded, whitespace in it
 * is not collapsed). Where the HTML is dropped (`<head>`, `<style>`, `<script>`, comments), the
 * block tags inside it (`{{#…}}`, `{{else}}`, `{{/…}}`, `{{^…}}`) are kept, so a block opened in a
 * dropped part and closed in the body still balances; the generated text is compiled like any other
 * part, so what it holds is checked before it is stored.
 *
 * Text rules (what a reader of text/plain needs): block elements and `<br>` end lines, paragraphs
 * and headings are separated by a blank line, list items start with "- ", a link whose text is not
 * its address is written "text (address)", `<img alt>` gives its alt text, character references are
 * decoded, runs of spaces become one, and at most one blank line is kept in a row.
 */

/** A private-use character that cannot come from a template (lifted tags are stored by index). */
const MARK = "\uE000";
const MARK_RE = /\uE000(\d+)\uE001/g;

const BLOCK_TAGS = new Set([
  "address",
  "article",
  "aside",
  "blockquote",
  "center",
  "dd",
  "div",
  "dl",
  "dt",
  "fieldset",
  "figcaption",
  "figure",
  "footer",
  "form",
  "header",
  "hr",
  "main",
  "nav",
  "ol",
  "pre",
  "section",
  "table",
  "tbody",
  "thead",
  "tfoot",
  "tr",
  "ul",
]);
const PARAGRAPH_TAGS = new Set(["p", "h1", "h2", "h3", "h4", "h5", "h6"]);
const DROPPED = ["head", "style", "script", "title", "noscript", "template"];

const NAMED_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: " ",
  copy: "©",
  reg: "®",
  trade: "™",
  hellip: "…",
  mdash: "—",
  ndash: "–",
  lsquo: "‘",
  rsquo: "’",
  ldquo: "“",
  rdquo: "”",
  bull: "•",
  middot: "·",
  euro: "€",
  pound: "£",
  yen: "¥",
  cent: "¢",
  sect: "§",
  deg: "°",
  laquo: "«",
  raquo: "»",
  times: "×",
  divide: "÷",
  zwnj: "",
  zwj: "",
  shy: "",
};

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]{2,8});/gi, (whole, ref: string) => {
    if (ref[0] === "#") {
      const code = ref[1] === "x" || ref[1] === "X" ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      if (!Number.isFinite(code) || code <= 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
        return whole;
      }
      return code === 0xa0 ? " " : String.fromCodePoint(code);
    }
    return NAMED_ENTITIES[ref.toLowerCase()] ?? whole;
  });
}

/**
 * `{{…}}`, `{{{…}}}` and `{{!-- … --}}` (a comment may contain `}}`). Every pattern here stops at
 * the next brace or angle bracket, or takes the rest of the input, so a megabyte of unclosed tags
 * (a legacy template is not parsed first) costs linear time, never quadratic.
 */
const MUSTACHE_RE = /\{\{!--[\s\S]*?(?:--\}\}|$)|\{\{\{[^{}]*\}\}\}|\{\{[^{}]*\}\}/g;
const BLOCK_MUSTACHE_RE = /^\{\{~?\s*(?:[#^/]|else\b)/;

const ATTR_RE: Record<string, RegExp> = {
  href: /\shref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))/i,
  alt: /\salt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))/i,
};

function attr(attrs: string, name: "href" | "alt"): string | null {
  const m = ATTR_RE[name]!.exec(` ${attrs}`);
  if (!m) return null;
  return m[1] ?? m[2] ?? m[3] ?? "";
}

/** Element tags in one pass, left to right: line structure, links, images; other tags vanish. */
function readTags(s: string): string {
  const out: string[] = [];
  // Whether the text so far ends a line (spaces aside), kept as it grows so each check is O(1).
  let lineStart = true;
  const emit = (part: string) => {
    if (part === "") return;
    out.push(part);
    const trimmed = part.replace(/ +$/, "");
    if (trimmed !== "") lineStart = trimmed.endsWith("\n");
  };
  let link: { href: string; at: number } | null = null;
  let last = 0;
  for (const m of s.matchAll(/<(\/?)([a-z][a-z0-9]*)\b([^<>]*)>/gi)) {
    emit(s.slice(last, m.index));
    last = m.index + m[0].length;
    const closing = m[1] === "/";
    const name = m[2]!.toLowerCase();
    const attrs = m[3]!;
    if (name === "a") {
      if (link) emit(linkSuffix(link, out));
      link = null;
      const href = closing ? null : attr(attrs, "href");
      if (href && !href.startsWith("#") && !/^javascript:/i.test(href)) link = { href, at: out.length };
    } else if (name === "img") {
      const alt = attr(attrs, "alt");
      if (alt) emit(` ${alt} `);
    } else if (name === "br") emit("\n");
    // A list item starts a line of its own; closed items and lists end theirs without blank lines.
    else if (name === "li") emit(lineStart ? (closing ? "" : "- ") : closing ? "\n" : "\n- ");
    else if (name === "td" || name === "th") emit(" ");
    else if (PARAGRAPH_TAGS.has(name)) emit("\n\n");
    else if (BLOCK_TAGS.has(name) && !lineStart) emit("\n");
  }
  emit(s.slice(last));
  if (link) emit(linkSuffix(link, out));
  return out.join("");
}

/** " (address)" after a link's text, unless the text is the address (or there is no text: then the address). */
function linkSuffix(link: { href: string; at: number }, out: string[]): string {
  const shown = link.href.replace(/^mailto:/i, "");
  const text = out.slice(link.at).join("").trim();
  if (text === "") return shown;
  return decodeEntities(text) === decodeEntities(shown) ? "" : ` (${shown})`;
}

export function htmlToPlainText(html: string): string {
  const lifted: string[] = [];
  const lift = (tag: string) => `${MARK}${lifted.push(tag) - 1}\uE001`;
  let s = html.replace(/[\uE000\uE001]/g, "").replace(MUSTACHE_RE, lift);

  // Parts that are not read: keep only the block tags they hold.
  const keepBlocks = (part: string) =>
    [...part.matchAll(MARK_RE)]
      .map((m) => Number(m[1]))
      .filter((i) => BLOCK_MUSTACHE_RE.test(lifted[i]!))
      .map((i) => `${MARK}${i}\uE001`)
      .join("");
  s = s.replace(/<!--[\s\S]*?(?:-->|$)/g, keepBlocks);
  for (const tag of DROPPED) {
    s = s.replace(new RegExp(`<${tag}\\b[\\s\\S]*?(?:</${tag}\\s*>|$)`, "gi"), keepBlocks);
  }
  s = s.replace(/<!doctype[^<>]*>/gi, "");

  // Preformatted text keeps its line breaks and spaces: protect it like a tag.
  s = s.replace(/<pre\b[^<>]*>([\s\S]*?)(?:<\/pre\s*>|$)/gi, (_m, inner: string) => {
    const text = decodeEntities(inner.replace(/<br\b[^<>]*>/gi, "\n").replace(/<[^<>]*>/g, ""));
    return `<p>${lift(text)}</p>`; // a paragraph of its own
  });

  // Whitespace in HTML source is not layout.
  s = s.replace(/\s+/g, " ");

  s = readTags(s);
  s = decodeEntities(s);

  const lines = s.split("\n").map((l) => l.replace(/[ \t\f\v\u00a0]+/g, " ").trim());
  const out: string[] = [];
  for (const line of lines) {
    if (line === "" && (out.length === 0 || out[out.length - 1] === "")) continue;
    out.push(line);
  }
  while (out.length > 0 && out[out.length - 1] === "") out.pop();
  // A lifted <pre> holds lifted tags of its own: two passes put everything back.
  const restore = (t: string) => t.replace(MARK_RE, (_m, i: string) => lifted[Number(i)]!);
  return restore(restore(out.join("\n")));
}
