/**
 * buildMime's one-pass serializer (origin/src/compose/render-mime.ts) against the library's own
 * stream build (`MimeNode.build()`), the reference: over a corpus of jobs (single parts,
 * multipart/alternative, attachments inline and not, text attachments, non-ASCII headers and
 * bodies, long lines and long words, trailing whitespace, bare CR/LF in text and in binary,
 * bodies past the QP encoder's 64 KiB slice, empty bodies), the same compiled tree must serialize
 * to the same bytes both ways, in either order, and the fast path must be taken.
 */
import { describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { buildMime, composeMimeTree, type ComposableJob } from "../../origin/src/compose/build-mime.ts";
import { renderMimeTree } from "../../origin/src/compose/render-mime.ts";

const DOMAIN = "sender.test";
const DATE = new Date("2026-03-04T05:06:07Z");

function job(message: Partial<DeliveryJob["message"]>, attachmentBytes?: Buffer[]): ComposableJob {
  const j: ComposableJob = {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "tnt_1",
    attempt: 1,
    recipients: ["rcpt@example.net"],
    message: {
      from: { email: `news@${DOMAIN}`, name: "Sender Name" },
      to: [{ email: "rcpt@example.net", name: "Rcpt" }],
      subject: "Hello",
      headers: {},
      messageIdHeader: `m1@${DOMAIN}`,
      ...message,
    },
    dkim: null,
  };
  if (attachmentBytes) j.attachmentBytes = attachmentBytes;
  return j;
}

const ref = (bytes: Buffer) => ({ key: "blobs/x", size: bytes.length, sha256: "0".repeat(64) });
const binary = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 37 + 11) % 256));
const lonely = Buffer.from("a\rb\nc\r\nd \r\ne\t\n", "latin1");
const big = `${"<p>paragraph with words and = signs & ümlauts</p>\n".repeat(2000)}   `;

const corpus: Array<[string, ComposableJob]> = [
  ["html only", job({ html: "<p>html body</p>\n<p>second\tline  with  spaces </p>\n" })],
  ["text only", job({ text: "plain body\n" })],
  ["multipart/alternative", job({ text: "plain", html: "<p>html</p>" })],
  ["empty text", job({ text: "" })],
  ["empty html and text", job({ text: "", html: "" })],
  [
    "8-bit subject, names and bodies",
    job({
      subject: "Grüße ✓ — 日本語",
      from: { email: `news@${DOMAIN}`, name: "Jürgen «Newsletter»" },
      to: [{ email: "rcpt@example.net", name: 'Zoë, "the" reader' }],
      text: "Grüße aus Köln\r\nÄÖÜ ß\r\n",
      html: "<p>日本語のテキスト</p>",
    }),
  ],
  ["mostly non-ASCII text (base64)", job({ text: "日本語のテキスト。".repeat(200) })],
  [
    "long lines and a long word",
    job({ text: `${"word ".repeat(400)}\n${"x".repeat(3000)}\n`, html: `<p>${"y".repeat(5000)}</p>` }),
  ],
  ["trailing whitespace", job({ text: "line with trailing spaces   \nand tab\t\n  ", html: "<p>x</p> \t " })],
  ["bare CR and LF in text", job({ text: lonely.toString("latin1") })],
  ["body over the 64 KiB encoder slice", job({ html: big, text: big.toUpperCase() })],
  [
    "cc, reply-to and custom headers",
    job({
      cc: [{ email: "cc@example.net" }, { email: "cc2@example.net", name: "Second CC" }],
      replyTo: [{ email: "reply@example.net", name: "Replies" }],
      headers: {
        "X-Campaign": "spring-2026",
        "List-Unsubscribe": "<https://example.com/u?id=1>",
        "X-Long": "z".repeat(1200),
      },
      html: "<p>x</p>",
    }),
  ],
  [
    "attachments, inline and not",
    job(
      {
        text: "see attached",
        html: '<p><img src="cid:logo"></p>',
        attachments: [
          {
            ...ref(binary),
            filename: "logo.png",
            type: "image/png",
            disposition: "inline",
            contentId: "logo",
          },
          {
            ...ref(binary),
            filename: "Rechnung März – № 7 😀.pdf",
            type: "application/pdf",
            disposition: "attachment",
          },
          { ...ref(lonely), filename: "data.csv", type: "text/csv", disposition: "attachment" },
          {
            ...ref(Buffer.alloc(0)),
            filename: "empty.bin",
            type: "application/octet-stream",
            disposition: "attachment",
          },
        ],
      },
      [binary, binary, lonely, Buffer.alloc(0)],
    ),
  ],
  [
    "attachment without bodies",
    job(
      { attachments: [{ ...ref(lonely), filename: "a.txt", type: "text/plain", disposition: "attachment" }] },
      [lonely],
    ),
  ],
];

describe("buildMime's one-pass serializer equals the library's stream build", () => {
  it.each(corpus)("%s", async (_name, j) => {
    // Fast first, then the reference, on one tree (same boundaries) …
    const tree = composeMimeTree(j, { date: DATE });
    const fast = renderMimeTree(tree);
    expect(fast, "the fast path was not taken").not.toBeNull();
    const reference = await tree.build();
    expect(fast!.equals(reference)).toBe(true);
    // … and the other way round on a fresh tree: neither serializer changes what the other writes.
    const tree2 = composeMimeTree(j, { date: DATE });
    const reference2 = await tree2.build();
    const fast2 = renderMimeTree(tree2);
    expect(fast2!.equals(reference2)).toBe(true);
  });

  it("buildMime writes what the stream build writes, minus the random boundaries", async () => {
    const j = corpus[2]![1];
    const viaBuildMime = (await buildMime(j, { date: DATE })).toString("latin1");
    const viaStream = (await composeMimeTree(j, { date: DATE }).build()).toString("latin1");
    const unbound = (s: string) => s.replace(/_NmP-[0-9a-f]+-Part_/g, "_NmP-B-Part_");
    expect(unbound(viaBuildMime)).toBe(unbound(viaStream));
  });

  it("a tree it cannot serialize (a part with streamed content) is left to build()", () => {
    const tree = composeMimeTree(job({ html: "<p>x</p>" }), { date: DATE });
    (tree as unknown as { content: unknown }).content = { pipe() {} };
    expect(renderMimeTree(tree)).toBeNull();
  });
});
