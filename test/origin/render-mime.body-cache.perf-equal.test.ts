/**
 * The encoded-body cache of buildMime's serializer (origin/src/compose/render-mime.ts): a body
 * served from the cache must be the bytes the library's stream build writes for that tree, for every
 * transfer encoding (7bit, quoted-printable, base64 for mostly non-ASCII text) and for one content in
 * several parts; a cache hit must actually happen for a repeated content; the cache stays within its
 * entry bound however many different bodies go through it.
 */
import { describe, expect, it } from "vitest";
import { composeMimeTree, type ComposableJob } from "../../origin/src/compose/build-mime.ts";
import { bodyCacheStats, renderMimeTree } from "../../origin/src/compose/render-mime.ts";

const DATE = new Date("2026-03-04T05:06:07Z");

function job(message: Partial<ComposableJob["message"]>, n = 0): ComposableJob {
  return {
    jobId: `msg_${n}.1`,
    messageId: `msg_${n}`,
    tenantId: "tnt_1",
    attempt: 1,
    recipients: [`rcpt${n}@example.net`],
    message: {
      from: { email: "news@sender.test", name: "Sender" },
      to: [{ email: `rcpt${n}@example.net` }],
      subject: "Hello",
      headers: {},
      messageIdHeader: `m${n}@sender.test`,
      ...message,
    },
    dkim: null,
  };
}

const html = `<p>${"A paragraph with = signs and words. ".repeat(40)}</p>\n`;
const shapes: Array<[string, Partial<ComposableJob["message"]>]> = [
  ["html (quoted-printable)", { html }],
  ["short text (7bit)", { text: "short plain text\n" }],
  ["mostly non-ASCII text (base64)", { text: "日本語のテキスト。".repeat(100) }],
  ["one content as text and html", { text: html, html }],
];

describe("encoded-body cache", () => {
  it.each(shapes)("%s: every repeat is the stream build's bytes, from the cache", async (_name, message) => {
    for (let n = 0; n < 5; n++) {
      const before = bodyCacheStats();
      const tree = composeMimeTree(job(message, n), { date: DATE });
      const fast = renderMimeTree(tree);
      expect(fast, "the fast path was not taken").not.toBeNull();
      expect(fast!.equals(await tree.build()), `personalization ${n}`).toBe(true);
      // After the first message of a content, its bodies come from the cache, nothing new is added.
      const after = bodyCacheStats();
      if (n > 0) {
        expect(after.entries).toBe(before.entries);
        expect(after.hits).toBeGreaterThan(before.hits);
      }
    }
  });

  it("keeps at most 64 bodies", () => {
    for (let n = 0; n < 200; n++) renderMimeTree(composeMimeTree(job({ html: `<p>body ${n}</p>` }, n)));
    const { entries, bytes } = bodyCacheStats();
    expect(entries).toBeLessThanOrEqual(64);
    expect(bytes).toBeGreaterThan(0);
  });
});
