import { simpleParser } from "mailparser";
import { describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { RESERVED_HEADER_NAMES } from "../../shared/mail/headers.ts";
import { validateMailSend } from "../../shared/sendgrid/mail-send.ts";
import { buildMime, MimeBuildError } from "../../origin/src/compose/build-mime.ts";

function job(message: Partial<DeliveryJob["message"]> = {}): DeliveryJob {
  return {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "t_1",
    attempt: 1,
    recipients: ["rcpt@example.net"],
    message: {
      from: { email: "sender@example.com", name: "Sender Name" },
      to: [{ email: "rcpt@example.net", name: "Rcpt" }],
      subject: "Hello ✓",
      text: "plain body",
      html: "<p>html body</p>",
      headers: {},
      messageIdHeader: "msg_1@example.com",
      ...message,
    },
    dkim: null,
  };
}

describe("buildMime", () => {
  it("builds a multipart/alternative message with the fixed Message-ID and the given Date", async () => {
    const date = new Date("2026-01-02T03:04:05Z");
    const raw = await buildMime(
      job({
        cc: [{ email: "cc@example.org" }],
        replyTo: [{ email: "reply@example.com", name: "Replies" }],
        headers: { "X-Campaign": "spring" },
      }),
      { date },
    );
    const head = raw.subarray(0, raw.indexOf("\r\n\r\n")).toString();
    expect(head).toMatch(/^Message-ID: <msg_1@example\.com>$/m);
    expect(head).toMatch(/^Content-Type: multipart\/alternative;/m);
    expect(head).toMatch(/^MIME-Version: 1\.0$/m);
    expect(head).not.toMatch(/^X-Mailer:/im);

    const parsed = await simpleParser(raw);
    expect(parsed.messageId).toBe("<msg_1@example.com>");
    expect(parsed.date?.toISOString()).toBe(date.toISOString());
    expect(parsed.subject).toBe("Hello ✓");
    expect(parsed.from?.value).toEqual([{ address: "sender@example.com", name: "Sender Name" }]);
    expect(parsed.cc && !Array.isArray(parsed.cc) ? parsed.cc.value[0]?.address : null).toBe(
      "cc@example.org",
    );
    expect(parsed.replyTo?.value[0]).toEqual({ address: "reply@example.com", name: "Replies" });
    expect(parsed.headers.get("x-campaign")).toBe("spring");
    expect(parsed.text?.trim()).toBe("plain body");
    expect(parsed.html).toContain("<p>html body</p>");
  });

  it("builds a single text/plain part when there is no html", async () => {
    const raw = await buildMime(job({ html: undefined }));
    expect(raw.toString()).toMatch(/^Content-Type: text\/plain/m);
    expect(raw.toString()).not.toMatch(/multipart/);
  });

  it("never loads files or URLs named in the content", async () => {
    // MailComposer would read `path`/`href` attachments; only plain strings may come from the API,
    // and disableFileAccess/disableUrlAccess makes sure a string is never taken as a path.
    const raw = await buildMime(job({ text: "/etc/passwd", html: "http://127.0.0.1:1/" }));
    const parsed = await simpleParser(raw);
    expect(parsed.text?.trim()).toBe("/etc/passwd");
  });

  it.each([
    ["a header value", { headers: { "X-Evil": "a\r\nBcc: victim@example.com" } }],
    ["the subject", { subject: "hi\nBcc: victim@example.com" }],
    ["a display name", { from: { email: "sender@example.com", name: "x\r\nBcc: v@example.com" } }],
    ["an address", { to: [{ email: "a@example.com\r\nBcc: v@example.com" }] }],
    ["the Message-ID", { messageIdHeader: "x@y\r\nBcc: v@example.com" }],
  ] as const)("throws when CR/LF reaches %s", async (_what, message) => {
    await expect(buildMime(job(message as Partial<DeliveryJob["message"]>))).rejects.toThrow(MimeBuildError);
  });

  it("throws on reserved or malformed custom header names instead of dropping them", async () => {
    await expect(buildMime(job({ headers: { From: "x@example.com" } }))).rejects.toThrow(/reserved/);
    await expect(buildMime(job({ headers: { "DKIM-Signature": "v=1" } }))).rejects.toThrow(/reserved/);
    await expect(buildMime(job({ headers: { "Bad Name": "x" } }))).rejects.toThrow(/field name/);
    await expect(buildMime(job({ headers: { "Bad:Name": "x" } }))).rejects.toThrow(/field name/);
  });

  it("throws on a Message-ID that is not id-left@id-right", async () => {
    await expect(buildMime(job({ messageIdHeader: "<msg@example.com>" }))).rejects.toThrow(/Message-ID/);
    await expect(buildMime(job({ messageIdHeader: "no-at-sign" }))).rejects.toThrow(/Message-ID/);
  });

  // Issue 6: the edge accepted Date, Message-ID, MIME-Version, Sender and Return-Path, which this
  // builder refused, so a send was answered 202 and then failed. Both now read one list.
  const edgeErrors = (headers: Record<string, string>) => {
    const r = validateMailSend({
      personalizations: [{ to: [{ email: "rcpt@example.net" }] }],
      from: { email: "sender@example.com" },
      subject: "s",
      content: [{ type: "text/plain", value: "x" }],
      headers,
    });
    return r.ok ? [] : r.errors.map((e) => e.message);
  };

  it.each(RESERVED_HEADER_NAMES.flatMap((n) => [n, n.toUpperCase()]))(
    "refuses reserved %s exactly as the edge validator does (one list, so they cannot drift)",
    async (name) => {
      expect(edgeErrors({ [name]: "x" })).toEqual(["Header cannot be one of the reserved keys."]);
      await expect(buildMime(job({ headers: { [name]: "x" } }))).rejects.toThrow(/reserved/);
    },
  );

  it("builds every custom header the edge accepts, names that merely look reserved included", async () => {
    const headers = {
      "X-Date": "a",
      "Resent-Date": "b",
      "List-Unsubscribe": "<mailto:u@example.com>",
      "X-To": "c",
    };
    expect(edgeErrors(headers)).toEqual([]);
    const parsed = await simpleParser(await buildMime(job({ headers })));
    expect(parsed.headers.get("x-date")).toBe("a");
    expect(parsed.headers.get("x-to")).toBe("c");
  });
});
