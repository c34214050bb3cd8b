/**
 * The repository explains itself (issue 6, "The repository stands on its own"): a newcomer with a clone
 * has everything a comment or a page points at.
 *  - No file cites the design notes and specs that were never part of the repository; comments point at
 *    docs/, RFCs or public documentation instead.
 *  - Every relative link in README.md and docs/ names a file that exists, and a section that exists
 *    when it has an #anchor (GitHub's heading ids).
 *  - Every `docs/<page>.md#<section>` pointer in code and config resolves the same way.
 * Files are the ones git knows (tracked, plus new files not ignored), so a new file is checked before
 * it is committed.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const SELF = path
  .relative(ROOT, import.meta.filename)
  .split(path.sep)
  .join("/");

/** Names of files outside the repository. Spelled in pieces so this file does not match itself. */
const OUTSIDE = new RegExp(
  [
    String.raw`scaisend\.md`,
    String.raw`sendgrid-v3\.md`,
    String.raw`\bDESIGN(?:\.md|\s*§)`,
    String.raw`\bNOTES\.md`,
    String.raw`\bSTYLE\.md`,
    String.raw`spec/seeds`,
  ].join("|"),
);

const SKIP_DIRS = new Set(["node_modules", ".git", ".tmp", ".dev", ".wrangler"]);

function repoFiles(): string[] {
  let listed: string[];
  try {
    listed = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
      cwd: ROOT,
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    })
      .split("\0")
      .filter(Boolean);
  } catch {
    // Not a git checkout (an exported tree): walk it instead.
    listed = [];
    const walk = (dir: string) => {
      for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
        const rel = dir ? `${dir}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (!SKIP_DIRS.has(entry.name)) walk(rel);
        } else if (entry.isFile()) listed.push(rel);
      }
    };
    walk("");
  }
  // A file deleted in the working tree is still listed by git until the deletion is committed.
  return [...new Set(listed)].filter((f) => fs.existsSync(path.join(ROOT, f))).sort();
}

/** Text of a file, or null for binary content. */
function readText(file: string): string | null {
  const buf = fs.readFileSync(path.join(ROOT, file));
  if (buf.subarray(0, 8000).includes(0)) return null;
  return buf.toString("utf8");
}

/** Markdown with fenced code blocks and inline code blanked out (line numbers kept). */
function proseOf(markdown: string): string {
  let inFence = false;
  return markdown
    .split("\n")
    .map((line) => {
      if (/^\s*(```|~~~)/.test(line)) {
        inFence = !inFence;
        return "";
      }
      return inFence ? "" : line.replace(/`[^`]*`/g, (m) => " ".repeat(m.length));
    })
    .join("\n");
}

/** GitHub's heading id: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, … */
function headingIds(markdown: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    if (inFence) continue;
    const explicit = line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g);
    for (const m of explicit) ids.add(m[1]!);
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/<[^>]+>/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  return ids;
}

const idsCache = new Map<string, Set<string>>();
function idsOf(file: string): Set<string> {
  let ids = idsCache.get(file);
  if (!ids) {
    ids = headingIds(fs.readFileSync(path.join(ROOT, file), "utf8"));
    idsCache.set(file, ids);
  }
  return ids;
}

/** Why `target` (relative to `fromFile`, `#anchor` optional) does not resolve, or null if it does. */
function brokenTarget(fromFile: string, target: string): string | null {
  const [rawPath = "", anchor] = target.split("#", 2) as [string, string | undefined];
  const filePart = decodeURIComponent(rawPath);
  const resolved = filePart
    ? path.posix.normalize(path.posix.join(path.posix.dirname(fromFile), filePart))
    : fromFile;
  if (resolved.startsWith("../")) return "points outside the repository";
  const abs = path.join(ROOT, resolved);
  if (!fs.existsSync(abs)) return "no such file";
  if (anchor && resolved.endsWith(".md") && !idsOf(resolved).has(anchor.toLowerCase())) {
    return `no section #${anchor} in ${resolved}`;
  }
  return null;
}

const files = repoFiles();
const markdownPages = files.filter((f) => f === "README.md" || (f.startsWith("docs/") && f.endsWith(".md")));

describe("the repository stands on its own", () => {
  it("has documentation pages to point at", () => {
    expect(markdownPages).toContain("docs/README.md");
    expect(markdownPages).toContain("docs/architecture.md");
  });

  it("no file cites design notes or specs that are not in the repository", () => {
    const offenders: string[] = [];
    for (const file of files) {
      if (file === SELF) continue;
      const text = readText(file);
      if (text === null) continue;
      text.split("\n").forEach((line, i) => {
        if (OUTSIDE.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim().slice(0, 160)}`);
      });
    }
    expect(offenders, "point these at docs/, an RFC or public documentation instead").toEqual([]);
  });

  it("every relative link in README.md and docs/ resolves to an existing file and section", () => {
    const broken: string[] = [];
    for (const page of markdownPages) {
      const prose = proseOf(fs.readFileSync(path.join(ROOT, page), "utf8"));
      prose.split("\n").forEach((line, i) => {
        const targets = [
          ...[...line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!),
          ...[...line.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/g)].map((m) => m[1]!),
        ];
        for (const target of targets) {
          if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) continue; // URL, mailto:
          const why = brokenTarget(page, target);
          if (why) broken.push(`${page}:${i + 1}: (${target}) ${why}`);
        }
      });
    }
    expect(broken).toEqual([]);
  });

  it("every docs/….md pointer in code, tests and config names an existing page and section", () => {
    const broken: string[] = [];
    for (const file of files) {
      if (file === SELF || file.endsWith(".md")) continue;
      const text = readText(file);
      if (text === null) continue;
      text.split("\n").forEach((line, i) => {
        for (const m of line.matchAll(/(?<![\w/.-])docs\/[\w./-]*\.md(?:#[\p{L}\p{N}_-]+)?/gu)) {
          const why = brokenTarget("", m[0]);
          if (why) broken.push(`${file}:${i + 1}: (${m[0]}) ${why}`);
        }
      });
    }
    expect(broken).toEqual([]);
  });
});

describe("headingIds follows GitHub's heading ids", () => {
  it("drops punctuation and code marks, keeps underscores, numbers repeats", () => {
    const ids = headingIds(
      [
        "# The edge ⇄ origin link protocol",
        "## `POST /v3/mail/send`",
        "## `GET /v3/messages/{id}`",
        "## Rotating SECRETS_KEY",
        "### Errors",
        "### Errors",
        "```",
        "## not a heading",
        "```",
      ].join("\n"),
    );
    expect([...ids]).toEqual([
      "the-edge--origin-link-protocol",
      "post-v3mailsend",
      "get-v3messagesid",
      "rotating-secrets_key",
      "errors",
      "errors-1",
    ]);
  });
});
