/**
 * SMTP submission's conversion (origin/src/submission/convert.ts, smtpapi.ts): messages built by
 * nodemailer's own MIME composer (what SMTP-only applications send), parsed with mailparser as the
 * server does, become mail/send bodies that the edge's validator (shared/sendgrid/mail-send.ts)
 * accepts; X-SMTPAPI is mapped and stripped; what cannot be carried is refused with 550.
 */
import { simpleParser } from "mailparser";
import MailComposer from "nodemailer/lib/mail-composer";
import type Mail from "nodemailer/lib/mailer";
import { describe, expect, it } from "vitest";
import { toMailSend, type SubmissionEnvelope } from "../../origin/src/submission/convert.ts";
import { SmtpReply } from "../../origin/src/submission/reply.ts";
import { validateMailSend } from "../../shared/sendgrid/mail-send.ts";

const compose = (mail: Mail.Options) => new MailComposer(mail).compile().build();

async function convert(mail: Mail.Options | Buffer, envelope: Partial<SubmissionEnvelope> = {}) {
  const raw = Buffer.isBuffer(mail) ? mail : await compose(mail);
  const parsed = await simpleParser(raw, {
    skipHtmlToText: true,
    skipTextToHtml: true,
    skipImageLinks: true,
    skipTextLinks: true,
    keepCidLinks: true,
  });
  return toMailSend(parsed, { mailFrom: "app@sender.test", rcptTo: ["a@inbox.test"], ...envelope });
}

async function refusal(mail: Mail.Options | Buffer, envelope: Partial<SubmissionEnvelope> = {}) {
  const err = await convert(mail, envelope).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SmtpReply);
  return err as SmtpReply;
}

const base: Mail.Options = {
  from: '"The App" <app@sender.test>',
  to: "a@inbox.test",
  subject: "Hello",
  text: "plain body",
};

describe("SMTP message → mail/send body", () => {
  it("maps From, Reply-To, Subject, text and HTML, and the edge's validator accepts the body", async () => {
    const { body, json } = await convert({
      ...base,
      to: '"Doe, Jane" <a@inbox.test>',
      replyTo: "support@sender.test",
      subject: "Grüße from the app",
      html: "<p>html <b>body</b></p>",
    });
    expect(body).toMatchObject({
      from: { email: "app@sender.test", name: "The App" },
      reply_to: { email: "support@sender.test" },
      subject: "Grüße from the app",
      content: [
        { type: "text/plain", value: "plain body" },
        { type: "text/html", value: "<p>html <b>body</b></p>" },
      ],
      // mail/send refuses ',' and ';' in a recipient's name; the display name keeps its words.
      personalizations: [{ to: [{ email: "a@inbox.test", name: "Doe Jane" }] }],
    });
    expect(JSON.parse(json)).toEqual(body);
    expect(validateMailSend(body)).toMatchObject({ ok: true });
  });

  it("takes the recipients from the envelope: To and Cc as the headers show them, the rest as bcc", async () => {
    const { body } = await convert(
      { ...base, to: "a@inbox.test, not-in-envelope@inbox.test", cc: "c@inbox.test", bcc: "ignored@x.test" },
      { rcptTo: ["a@inbox.test", "c@inbox.test", "hidden@inbox.test"] },
    );
    expect(body.personalizations).toEqual([
      {
        to: [{ email: "a@inbox.test" }],
        cc: [{ email: "c@inbox.test" }],
        bcc: [{ email: "hidden@inbox.test" }],
      },
    ]);
    expect(validateMailSend(body)).toMatchObject({ ok: true });
  });

  it("sends a message whose To names no envelope recipient as one message per recipient", async () => {
    const { body } = await convert(
      { ...base, to: "undisclosed-recipients:;" },
      { rcptTo: ["x@inbox.test", "y@inbox.test"] },
    );
    expect(body.personalizations).toEqual([
      { to: [{ email: "x@inbox.test" }] },
      { to: [{ email: "y@inbox.test" }] },
    ]);
    expect(validateMailSend(body)).toMatchObject({ ok: true });
  });

  it("carries attachments, and inline parts with their content_id", async () => {
    const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
    const { body } = await convert({
      ...base,
      html: '<p><img src="cid:logo@app"></p>',
      attachments: [
        { filename: "report.pdf", content: Buffer.from("%PDF-1.4 test"), contentType: "application/pdf" },
        { filename: "logo.png", content: png, contentType: "image/png", cid: "logo@app" },
      ],
    });
    // mailparser lists the related (inline) part first; the order of attachments carries no meaning.
    const sorted = [...(body.attachments as { filename: string }[])].sort((x, y) =>
      x.filename.localeCompare(y.filename),
    );
    expect(sorted).toEqual([
      {
        content: png.toString("base64"),
        filename: "logo.png",
        type: "image/png",
        disposition: "inline",
        content_id: "logo@app",
      },
      {
        content: Buffer.from("%PDF-1.4 test").toString("base64"),
        filename: "report.pdf",
        type: "application/pdf",
        disposition: "attachment",
      },
    ]);
    expect((body.content as { value: string }[])[1]!.value).toContain('src="cid:logo@app"');
    expect(validateMailSend(body)).toMatchObject({ ok: true });
  });

  it("carries custom headers as written and drops the ones the MIME builder or transport writes", async () => {
    const raw = Buffer.from(
      [
        "Received: from client by relay; Thu, 1 Jan 2026 00:00:00 +0000",
        "From: app@sender.test",
        "To: a@inbox.test",
        "Subject: Hi",
        "Date: Thu, 1 Jan 2026 00:00:00 +0000",
        "Message-ID: <one@app>",
        "MIME-Version: 1.0",
        "DKIM-Signature: v=1; a=rsa-sha256; d=old.test; b=abc",
        "X-Campaign: spring",
        "List-Unsubscribe: <mailto:unsub@sender.test>",
        "X-Long: a folded",
        " value",
        "In-Reply-To: <earlier@app>",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "body",
        "",
      ].join("\r\n"),
    );
    const { body } = await convert(raw);
    expect(body.headers).toEqual({
      "X-Campaign": "spring",
      "List-Unsubscribe": "<mailto:unsub@sender.test>",
      "X-Long": "a folded value",
      "In-Reply-To": "<earlier@app>",
    });
    expect(validateMailSend(body)).toMatchObject({ ok: true });
  });

  it("refuses Sender, Feedback-ID and a header given twice, naming it", async () => {
    expect((await refusal({ ...base, sender: "other@elsewhere.test" })).message).toMatch(
      /^5\.7\.1 The Sender header/,
    );
    expect((await refusal({ ...base, headers: { "Feedback-ID": "x:y" } })).responseCode).toBe(550);
    const twice = await refusal({ ...base, headers: { "X-Tag": ["one", "two"] } });
    expect(twice).toMatchObject({ responseCode: 550 });
    expect(twice.message).toMatch(/X-Tag appears more than once/);
  });

  it("derives the Idempotency-Key from the Message-ID and the content, not from the MIME framing", async () => {
    const mail = { ...base, messageId: "<fixed-1@app>", html: "<p>x</p>" };
    const first = await convert({ ...mail, date: new Date("2026-01-01T00:00:00Z") });
    // Rebuilt for a retry: another Date and other MIME boundaries, the same message.
    const again = await convert({ ...mail, date: new Date("2026-01-01T00:05:00Z") });
    expect(first.idempotencyKey).toMatch(/^smtp-[0-9a-f]{64}$/);
    expect(again.idempotencyKey).toBe(first.idempotencyKey);
    const other = await convert({ ...mail, text: "another body" });
    expect(other.idempotencyKey).not.toBe(first.idempotencyKey);
    const noId = await convert(
      Buffer.from("From: app@sender.test\r\nTo: a@inbox.test\r\nSubject: x\r\n\r\nbody\r\n"),
    );
    expect(noId.idempotencyKey).toBeUndefined();
  });
});

describe("X-SMTPAPI", () => {
  const smtpapi = (value: unknown) => ({ ...base, headers: { "X-SMTPAPI": JSON.stringify(value) } });

  it("maps categories, unique_args, send_at, asm, ip_pool and filters, and is not passed on", async () => {
    const sendAt = Math.floor(Date.now() / 1000) + 3600;
    const { body } = await convert(
      smtpapi({
        category: ["newsletter", "spring"],
        unique_args: { order: "1234", attempt: 2 },
        send_at: sendAt,
        asm_group_id: 7,
        asm_groups_to_display: [7, 8],
        ip_pool: "bulk",
        filters: {
          clicktrack: { settings: { enable: 0 } },
          opentrack: { settings: { enable: "1", replace: "%open%" } },
          subscriptiontrack: { settings: { enable: 1, "text/plain": "Leave: <% %>" } },
          ganalytics: { settings: { enable: 1, utm_source: "mail" } },
          footer: { settings: { enable: 1, "text/html": "<p>footer</p>" } },
          bypass_list_management: { settings: { enable: 0 } },
          bcc: { settings: { enable: 1, email: "archive@sender.test" } },
        },
      }),
    );
    expect(body).toMatchObject({
      categories: ["newsletter", "spring"],
      custom_args: { order: "1234", attempt: "2" },
      send_at: sendAt,
      asm: { group_id: 7, groups_to_display: [7, 8] },
      ip_pool_name: "bulk",
      tracking_settings: {
        click_tracking: { enable: false },
        open_tracking: { enable: true, substitution_tag: "%open%" },
        subscription_tracking: { enable: true, text: "Leave: <% %>" },
        ganalytics: { enable: true, utm_source: "mail" },
      },
      mail_settings: {
        footer: { enable: true, html: "<p>footer</p>" },
        bypass_list_management: { enable: false },
        bcc: { enable: true, email: "archive@sender.test" },
      },
    });
    expect(body.headers).toBeUndefined();
    expect(validateMailSend(body)).toMatchObject({ ok: true });
  });

  it("takes a single category as a string", async () => {
    const { body } = await convert(smtpapi({ category: "one" }));
    expect(body.categories).toEqual(["one"]);
  });

  it.each([
    [{ to: ["x@inbox.test"] }, /recipient list `to` is not supported/],
    [{ sub: { "-name-": ["A"] } }, /substitutions/],
    [{ section: { a: "b" } }, /sections/],
    [{ send_each_at: [1] }, /send_each_at/],
    [{ filters: { gravatar: { settings: { enable: 1 } } } }, /filter gravatar is not supported/],
    [
      { filters: { subscriptiontrack: { settings: { enable: 1, url: "https://x" } } } },
      /subscriptiontrack\.settings\.url/,
    ],
    [{ filters: { clicktrack: { settings: { enable: "yes" } } } }, /must be 0 or 1/],
    [{ unique_args: { a: { nested: 1 } } }, /unique_args\.a/],
    [{ asm_groups_to_display: [1] }, /needs asm_group_id/],
    [{ surprise: 1 }, /the key surprise is not supported/],
  ])("refuses %j with 550 and the reason", async (value, why) => {
    const err = await refusal(smtpapi(value));
    expect(err.responseCode).toBe(550);
    expect(err.message).toMatch(/^5\.6\.0 X-SMTPAPI: /);
    expect(err.message).toMatch(why);
  });

  it("refuses a header that is not JSON", async () => {
    const err = await refusal({ ...base, headers: { "X-SMTPAPI": "{not json" } });
    expect(err.message).toBe("5.6.0 X-SMTPAPI: the header is not valid JSON");
  });
});
