/**
 * Content blocks besides text/plain and text/html (shared/sendgrid/content-types.ts) as the origin
 * builds them (origin/src/compose/build-mime.ts): each is one more part of multipart/alternative, in
 * the order text/plain, text/x-amp-html, text/html (inside multipart/related with its inline
 * images), then the others; text/calendar names its METHOD (RFC 6047 §2.4). The structure is read
 * back from the raw bytes by walking the boundaries, and the bodies with mailparser.
 */
import { simpleParser } from "mailparser";
import { describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { buildMime, MimeBuildError, type ComposableJob } from "../../origin/src/compose/build-mime.ts";

function job(
  message: Partial<DeliveryJob["message"]> = {},
  extra: Partial<ComposableJob> = {},
): ComposableJob {
  return {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "t_1",
    attempt: 1,
    recipients: ["rcpt@example.net"],
    message: {
      from: { email: "sender@example.com" },
      to: [{ email: "rcpt@example.net" }],
      subject: "Invitation",
      text: "plain body",
      html: "<p>html body</p>",
      headers: {},
      messageIdHeader: "msg_1@example.com",
      ...message,
    },
    dkim: null,
    ...extra,
  };
}

interface Part {
  type: string;
  children: Part[];
  body: string;
}

/** The MIME tree of a raw message: each part's Content-Type (as written) and its sub-parts. */
function tree(raw: string): Part {
  const split = raw.indexOf("\r\n\r\n");
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, " ");
  const body = raw.slice(split + 4);
  const type = /^content-type:\s*(.*)$/im.exec(head)?.[1]?.trim() ?? "text/plain";
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
  if (!type.toLowerCase().startsWith("multipart/") || !boundary) return { type, children: [], body };
  const chunks = body.split(`--${boundary}`);
  // chunks[0] is the preamble, the last one follows the closing delimiter ("--").
  const children = chunks.slice(1, -1).map((c) => tree(c.replace(/^\r\n/, "")));
  return { type, children, body };
}

const kinds = (p: Part) => p.children.map((c) => c.type.split(";")[0]!.trim().toLowerCase());

const CALENDAR =
  "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:1@x\r\nEND:VEVENT\r\nEND:VCALENDAR";
const AMP = '<!doctype html><html ⚡4email><head><meta charset="utf-8"></head><body>amp</body></html>';

describe("other content types in the MIME", () => {
  it("text, AMP, HTML, then calendar inside multipart/alternative; calendar with its method", async () => {
    const raw = (
      await buildMime(
        job({
          alternatives: [
            { type: "text/x-amp-html", value: AMP },
            { type: "text/calendar", value: CALENDAR },
          ],
        }),
      )
    ).toString();
    const root = tree(raw);
    expect(root.type.toLowerCase()).toMatch(/^multipart\/alternative;/);
    expect(kinds(root)).toEqual(["text/plain", "text/x-amp-html", "text/html", "text/calendar"]);
    expect(root.children[1]!.type).toBe("text/x-amp-html; charset=utf-8");
    expect(root.children[3]!.type).toBe("text/calendar; charset=utf-8; method=REQUEST");
    const parsed = await simpleParser(raw);
    expect(parsed.text?.trim()).toBe("plain body");
    expect(parsed.html).toContain("<p>html body</p>");
  });

  it("with inline images and an attachment: mixed ⊃ alternative ⊃ [text, AMP, related ⊃ [html, image], calendar]", async () => {
    const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47]);
    const raw = (
      await buildMime(
        job(
          {
            html: '<p>logo <img src="cid:logo"></p>',
            alternatives: [
              { type: "text/x-amp-html", value: AMP },
              { type: "text/calendar", value: CALENDAR },
            ],
            attachments: [
              {
                filename: "logo.png",
                type: "image/png",
                disposition: "inline",
                contentId: "logo",
                ...ref(4),
              },
              { filename: "agenda.pdf", type: "application/pdf", disposition: "attachment", ...ref(4) },
            ],
          },
          { attachmentBytes: [png, png] },
        ),
      )
    ).toString();
    const root = tree(raw);
    expect(kinds(root)).toEqual(["multipart/alternative", "application/pdf"]);
    const alt = root.children[0]!;
    expect(kinds(alt)).toEqual(["text/plain", "text/x-amp-html", "multipart/related", "text/calendar"]);
    expect(kinds(alt.children[2]!)).toEqual(["text/html", "image/png"]);
  });

  it("without text and HTML a lone calendar block is the whole body; other text types get UTF-8", async () => {
    const lone = tree(
      (
        await buildMime(
          job({
            text: undefined,
            html: undefined,
            alternatives: [{ type: "text/calendar", value: CALENDAR }],
          }),
        )
      ).toString(),
    );
    expect(lone.type).toBe("text/calendar; charset=utf-8; method=REQUEST");
    expect(lone.children).toEqual([]);
    const watch = tree(
      (await buildMime(job({ alternatives: [{ type: "text/watch-html", value: "<b>w</b>" }] }))).toString(),
    );
    expect(kinds(watch)).toEqual(["text/plain", "text/html", "text/watch-html"]);
    expect(watch.children[2]!.type).toBe("text/watch-html; charset=utf-8");
  });

  it("refuses a type with parameters or a line break (the edge never sends one)", async () => {
    await expect(
      buildMime(job({ alternatives: [{ type: "text/calendar; method=X", value: "v" }] })),
    ).rejects.toThrow(MimeBuildError);
    await expect(
      buildMime(job({ alternatives: [{ type: "text/calendar\r\nBcc: x@y", value: "v" }] })),
    ).rejects.toThrow(MimeBuildError);
  });
});

function ref(size: number) {
  return { key: `blobs/20260101/t_1/${"a".repeat(64)}`, size, sha256: "a".repeat(64) };
}
