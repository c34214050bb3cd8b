/**
 * Two parts of the mail/send contract (docs/api/sendgrid.md#other-content-types, #fields): content types
 * besides text/plain and text/html (shared/sendgrid/content-types.ts: which are accepted, which
 * refused and why, the Content-Type each part gets), and the older `mail_settings.bcc` setting, which
 * adds its address to every message's bcc (shared/sendgrid/personalize.ts) once; plus what
 * `spam_check` gets. Bodies go through validateMailSend first, as the route hands them over, and the
 * real @sendgrid/mail builds the request body where a client's shape matters.
 */
import { MailService } from "@sendgrid/mail";
import { describe, expect, it } from "vitest";
import {
  alternativeContentType,
  contentTypeErrors,
  MAX_OTHER_CONTENT,
} from "../../shared/sendgrid/content-types.ts";
import {
  MAIL_SEND_DOCS_URL,
  notSupportedErrors,
  validateMailSend,
  type MailSend,
} from "../../shared/sendgrid/mail-send.ts";
import { expandPersonalizations } from "../../shared/sendgrid/personalize.ts";

const NOW_MS = Date.UTC(2024, 0, 1);

function valid(body: unknown): MailSend {
  const r = validateMailSend(body, NOW_MS);
  if (!r.ok) throw new Error(`fixture invalid: ${JSON.stringify(r.errors)}`);
  return r.value;
}

function base(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    personalizations: [{ to: [{ email: "to@example.com" }] }],
    from: { email: "from@example.com" },
    subject: "Hello",
    content: [{ type: "text/plain", value: "Hi" }],
    ...extra,
  };
}

const help = `${MAIL_SEND_DOCS_URL}#content.type`;

describe("content types", () => {
  it("accepts any type/subtype after text/plain and text/html, once each", () => {
    const content = [
      { type: "text/plain", value: "x" },
      { type: "text/html", value: "<p>x</p>" },
      { type: "text/x-amp-html", value: "amp" },
      { type: "text/calendar", value: "cal" },
      { type: "application/ics", value: "ics" },
    ];
    const mail = valid(base({ content }));
    expect(notSupportedErrors(mail, NOW_MS)).toEqual([]);
    expect(expandPersonalizations(mail)[0]!.otherContent).toEqual(content.slice(2));
  });

  it("refuses what cannot be a MIME part, a type twice, and too many blocks, each at its path", () => {
    expect(
      contentTypeErrors([
        { type: "text/plain" },
        { type: "Multipart/Alternative" },
        { type: "message/rfc822" },
        { type: "text" },
        { type: "text/cal endar" },
        { type: "Text/Plain" },
      ]),
    ).toEqual([
      {
        message:
          'The content type "Multipart/Alternative" cannot be sent as a content block: multipart and message types need a structure of their own; send it as an attachment.',
        field: "content.1.type",
        help,
      },
      {
        message:
          'The content type "message/rfc822" cannot be sent as a content block: multipart and message types need a structure of their own; send it as an attachment.',
        field: "content.2.type",
        help,
      },
      {
        message: 'The content type "text" is not a MIME type of the form type/subtype (RFC 2045).',
        field: "content.3.type",
        help,
      },
      {
        message: 'The content type "text/cal endar" is not a MIME type of the form type/subtype (RFC 2045).',
        field: "content.4.type",
        help,
      },
      {
        message: 'The content type "Text/Plain" appears more than once; each content type may be sent once.',
        field: "content.5.type",
        help,
      },
    ]);
    const many = Array.from({ length: MAX_OTHER_CONTENT + 1 }, (_, i) => ({ type: `text/x-part${i}` }));
    expect(contentTypeErrors([{ type: "text/plain" }, ...many]).map((e) => e.field)).toEqual([
      `content.${MAX_OTHER_CONTENT + 1}.type`,
    ]);
  });

  it("SendGrid's order rule still applies: text/plain, then text/html, then the rest", () => {
    const r = validateMailSend(
      base({
        content: [
          { type: "text/plain", value: "x" },
          { type: "text/calendar", value: "c" },
          { type: "text/html", value: "h" },
        ],
      }),
      NOW_MS,
    );
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => e.field)).toEqual(["content"]);
  });

  it("gives text parts UTF-8 and a calendar its METHOD (RFC 6047 §2.4)", () => {
    expect(alternativeContentType("text/x-amp-html", "a")).toBe("text/x-amp-html; charset=utf-8");
    expect(alternativeContentType("TEXT/Calendar", "BEGIN:VCALENDAR\r\nMETHOD:cancel\r\nEND:VCALENDAR")).toBe(
      "text/calendar; charset=utf-8; method=CANCEL",
    );
    expect(alternativeContentType("text/calendar", "BEGIN:VCALENDAR\nEND:VCALENDAR")).toBe(
      "text/calendar; charset=utf-8",
    );
    expect(alternativeContentType("application/ics", "x")).toBe("application/ics");
  });
});

describe("mail_settings.bcc and spam_check", () => {
  it("bcc adds its address to every message's bcc, once, and not where it is a recipient already", () => {
    const mail = valid(
      base({
        personalizations: [
          { to: [{ email: "a@example.com" }] },
          { to: [{ email: "b@example.com" }], bcc: [{ email: "keep@example.com" }] },
          { to: [{ email: "c@example.com" }], cc: [{ email: "Archive@Example.org" }] },
        ],
        mail_settings: { bcc: { enable: true, email: "archive@example.org" } },
      }),
    );
    expect(expandPersonalizations(mail).map((d) => d.bcc)).toEqual([
      [{ email: "archive@example.org" }],
      [{ email: "keep@example.com" }, { email: "archive@example.org" }],
      [],
    ]);
    expect(notSupportedErrors(mail, NOW_MS)).toEqual([]);
  });

  it("bcc turned off adds nothing; without an email it is SendGrid's 400", () => {
    const off = valid(base({ mail_settings: { bcc: { enable: false, email: "archive@example.org" } } }));
    expect(expandPersonalizations(off)[0]!.bcc).toEqual([]);
    const r = validateMailSend(base({ mail_settings: { bcc: { enable: true } } }), NOW_MS);
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.errors[0]).toMatchObject({
        message: "You must include a recipient object when using the bcc mail setting.",
        field: "mail_settings.bcc.email",
      });
  });

  it("the setting as @sendgrid/mail 8.1.6 sends it (mailSettings.bcc) reaches the drafts", async () => {
    const sg = new MailService();
    let body: unknown;
    sg.setClient({
      request: async (req: { body: unknown }) => {
        body = req.body;
        return [{ statusCode: 202, headers: {}, body: "" }, ""];
      },
    } as never);
    await sg.send({
      to: "to@example.com",
      from: "from@example.com",
      subject: "s",
      text: "t",
      mailSettings: { bcc: { enable: true, email: "archive@example.org" } },
    } as never);
    expect(expandPersonalizations(valid(body))[0]!.bcc).toEqual([{ email: "archive@example.org" }]);
  });

  it("spam_check: enable false is accepted; enable true is a 400 saying it is retired", () => {
    expect(
      notSupportedErrors(valid(base({ mail_settings: { spam_check: { enable: false } } })), NOW_MS),
    ).toEqual([]);
    expect(
      notSupportedErrors(
        valid(base({ mail_settings: { spam_check: { enable: true, threshold: 5 } } })),
        NOW_MS,
      ),
    ).toEqual([
      {
        message:
          "The spam check mail setting is retired (as at SendGrid) and this deployment does not score outgoing mail for spam; remove mail_settings.spam_check or set its enable to false.",
        field: "mail_settings.spam_check",
        help: `${MAIL_SEND_DOCS_URL}#mail-settings.spam-check`,
      },
    ]);
  });
});
