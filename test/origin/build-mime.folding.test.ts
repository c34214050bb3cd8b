/**
 * Issue 6, item 6: no line of a built message is longer than RFC 5322's 998 octets (§2.1.1), and
 * what was folded or encoded to get there reads back exactly. Sizes are the largest the edge accepts
 * (shared/sendgrid/mail-send.ts), so these are the worst cases delivery can meet.
 */
import { createRequire } from "node:module";
import { simpleParser, type AddressObject } from "mailparser";
import { describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import {
  MAX_HEADER_NAME_LENGTH,
  MAX_HEADER_VALUE_BYTES,
  MAX_NAME_BYTES,
  MAX_SUBJECT_BYTES,
} from "../../shared/sendgrid/mail-send.ts";
import { buildMime, MAX_LINE_OCTETS, MimeBuildError } from "../../origin/src/compose/build-mime.ts";

// mailparser decodes encoded-words only in the headers it knows; for custom headers use the decoder
// it is built on (libmime, installed with mailparser).
const libmime = createRequire(import.meta.url)("libmime") as { decodeWords(value: string): string };

function job(message: Partial<DeliveryJob["message"]> = {}): DeliveryJob {
  return {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "t_1",
    attempt: 1,
    recipients: ["rcpt@example.net"],
    message: {
      from: { email: "sender@example.com", name: "Sender" },
      to: [{ email: "rcpt@example.net" }],
      subject: "Hello",
      text: "plain",
      headers: {},
      messageIdHeader: "msg_1@example.com",
      ...message,
    },
    dkim: null,
  };
}

/** Every line's length in octets (CRLF excluded), read from the raw bytes. */
function lineLengths(raw: Buffer): number[] {
  const out: number[] = [];
  let start = 0;
  while (start < raw.length) {
    let end = raw.indexOf(0x0a, start);
    if (end === -1) end = raw.length;
    out.push(end - start - (raw[end - 1] === 0x0d ? 1 : 0));
    start = end + 1;
  }
  return out;
}

async function build(message: Partial<DeliveryJob["message"]>) {
  const raw = await buildMime(job(message));
  expect(Math.max(...lineLengths(raw))).toBeLessThanOrEqual(MAX_LINE_OCTETS);
  return { raw, parsed: await simpleParser(raw) };
}

const kanji = (bytes: number) => "日".repeat(Math.floor(bytes / 3));
const ascii = "a".repeat(MAX_SUBJECT_BYTES);

describe("buildMime keeps every header line within 998 octets, reading back exactly", () => {
  it.each([
    ["ASCII without a single space", ascii],
    ["CJK without spaces", kanji(MAX_SUBJECT_BYTES)],
    ["long ASCII runs around a few non-ASCII words", `${"x".repeat(8000)} 日本 ${"y".repeat(8000)}`],
    ["words separated by spaces", "word ".repeat(MAX_SUBJECT_BYTES / 5 - 1) + "end"],
    ["text that looks like an encoded-word", `=?UTF-8?B?SGk=?= ${"z".repeat(2000)}`],
  ])("a subject of the largest size the edge accepts: %s", async (_what, subject) => {
    const { parsed } = await build({ subject });
    expect(parsed.subject).toBe(subject);
  });

  it("custom header values of the largest size: one run, non-ASCII, and spaced words", async () => {
    const headers = {
      "X-Run": "v".repeat(MAX_HEADER_VALUE_BYTES),
      "X-Kanji": kanji(MAX_HEADER_VALUE_BYTES),
      "X-Words": "w ".repeat(MAX_HEADER_VALUE_BYTES / 2 - 1) + "w",
      ["X-" + "n".repeat(MAX_HEADER_NAME_LENGTH - 2)]: "u".repeat(2000),
    };
    const { parsed } = await build({ headers });
    for (const [name, value] of Object.entries(headers)) {
      expect(libmime.decodeWords(parsed.headers.get(name.toLowerCase()) as string), name).toBe(value);
    }
  });

  it("folds what can be folded and encodes only a run that cannot fit a line", async () => {
    const url = `<https://example.com/u/${"p".repeat(900)}>`; // 925 characters: fits a line as it is
    const { raw } = await build({ headers: { "List-Unsubscribe": url, "X-Words": "w ".repeat(2000) } });
    // Unfolded (RFC 5322 §2.2.3), the header section shows each value as it was given.
    const head = raw
      .subarray(0, raw.indexOf("\r\n\r\n"))
      .toString()
      .replace(/\r\n(?=[ \t])/g, "");
    expect(head).toContain(`List-Unsubscribe: ${url}`);
    expect(head).toMatch(/^X-Words: w w w/m);
    expect(head).toMatch(/^Subject: Hello$/m);
  });

  it("display names of the largest size the edge accepts: ASCII, with quotes and backslashes, CJK", async () => {
    const names = [
      "n".repeat(MAX_NAME_BYTES),
      `${'"\\'.repeat(MAX_NAME_BYTES / 4)}${"q".repeat(MAX_NAME_BYTES / 2)}`,
      kanji(MAX_NAME_BYTES),
    ];
    const local = `${"l".repeat(64)}`;
    const domain = `${`${"d".repeat(63)}.`.repeat(3)}${"e".repeat(61)}`; // a 320-character address in all
    const to = names.map((name, i) => ({ email: `${local.slice(1)}${i}@${domain}`, name }));
    const { parsed } = await build({ from: { email: to[0]!.email, name: names[1]! }, to, cc: to });
    expect(parsed.from?.value[0]?.name).toBe(names[1]);
    expect((parsed.to as AddressObject).value.map((a) => [a.address, a.name])).toEqual(
      to.map((a) => [a.email, a.name]),
    );
  });

  it("writes body lines longer than 998 as quoted-printable or base64, and they read back exactly", async () => {
    const text = `${"t".repeat(5000)}\n${kanji(30_000)}\nend`;
    const html = `<p>${"h".repeat(100_000)}</p>`;
    const { raw, parsed } = await build({ text, html });
    const encodings = [...raw.toString("latin1").matchAll(/^Content-Transfer-Encoding: (.+)$/gim)].map((m) =>
      m[1]!.toLowerCase(),
    );
    expect(encodings).toHaveLength(2);
    for (const e of encodings) expect(["quoted-printable", "base64"]).toContain(e);
    expect(parsed.text).toBe(text);
    expect(parsed.html).toBe(html);
  });

  it("refuses a message it cannot bring within 998 octets instead of sending it", async () => {
    // A field name cannot be folded; the edge caps names at 256, so only a job from elsewhere has this.
    await expect(buildMime(job({ headers: { [`X-${"n".repeat(1000)}`]: "v" } }))).rejects.toThrow(
      MimeBuildError,
    );
    await expect(buildMime(job({ headers: { [`X-${"n".repeat(1000)}`]: "v" } }))).rejects.toThrow(/998/);
  });
});
