/**
 * POST /v3/mail/send failures through the real route: status codes and exact SendGrid-style bodies
 * (`{"errors":[{message, field, help}]}`, docs/api/sendgrid.md#errors).
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  bearer,
  call,
  mailBody,
  sendMail,
  setupTenant,
  storedMessageCount,
  type TenantFixture,
} from "./helpers.ts";

const HELP = "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send";

let t: TenantFixture;
beforeAll(async () => {
  t = await setupTenant();
});

// In D1 and in every hub shard: a live message is only in its shard until the catalog flush.
const messageCount = storedMessageCount;

async function expectErrors(res: Response, status: number, errors: unknown[]): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  expect(await res.json()).toEqual({ errors });
}

describe("post /v3/mail/send validation", () => {
  it("rejects a body without personalizations", async () => {
    const body = mailBody(t.from);
    delete body.personalizations;
    await expectErrors(await sendMail(t.liveKey, body), 400, [
      {
        message: "The personalizations field is required and must have at least one personalization.",
        field: "personalizations",
        help: `${HELP}#personalizations`,
      },
    ]);
  });

  it("rejects empty personalizations", async () => {
    await expectErrors(await sendMail(t.liveKey, mailBody(t.from, { personalizations: [] })), 400, [
      {
        message: "You must have at least one personalization.",
        field: "personalizations",
        help: `${HELP}#personalizations`,
      },
    ]);
  });

  it("rejects a from address that is not an email", async () => {
    await expectErrors(
      await sendMail(t.liveKey, mailBody(t.from, { from: { email: "not-an-address" } })),
      400,
      [
        {
          message: "The from email does not contain a valid address.",
          field: "from.email",
          help: `${HELP}#from.email`,
        },
      ],
    );
  });

  it("rejects content together with template_id", async () => {
    await expectErrors(
      await sendMail(t.liveKey, mailBody(t.from, { template_id: "d-0123456789abcdef" })),
      400,
      [
        {
          message:
            "The content param cannot be combined with template_id: the dynamic template supplies the content. Remove one of them.",
          field: "content",
          help: `${HELP}#content`,
        },
      ],
    );
  });

  it("rejects a custom header whose value carries CR/LF (header injection)", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, { headers: { "X-Note": "hi\r\nBcc: victim@example.org" } }),
    );
    await expectErrors(res, 400, [
      {
        message: 'The header "X-Note" cannot contain CR or LF characters in its name or value.',
        field: "headers.X-Note",
        help: `${HELP}#headers`,
      },
    ]);
  });

  it("rejects a bare LF in a personalization header and a CR/LF in the subject, reporting both", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        subject: "Hi\nBcc: victim@example.org",
        personalizations: [{ to: [{ email: "rcpt@example.net" }], headers: { "X-Ok": "a\nb" } }],
      }),
    );
    await expectErrors(res, 400, [
      {
        message: 'The header "X-Ok" cannot contain CR or LF characters in its name or value.',
        field: "personalizations.0.headers.X-Ok",
        help: `${HELP}#personalizations.headers`,
      },
      { message: "The subject cannot contain CRLF characters.", field: "subject", help: `${HELP}#subject` },
    ]);
  });

  it("rejects a JSON body that is not an object", async () => {
    await expectErrors(await sendMail(t.liveKey, "[1,2]"), 400, [
      { message: "Invalid type. Expected: object, given: array.", field: null, help: null },
    ]);
  });

  it("control: the stored-message count sees an accepted live send at once, before its catalog flush", async () => {
    const before = await messageCount(t.tenantId);
    expect((await sendMail(t.liveKey, mailBody(t.from))).status).toBe(202);
    expect(await messageCount(t.tenantId)).toBe(before + 1);
  });

  it("stores nothing when the request is rejected", async () => {
    const before = await messageCount(t.tenantId);
    expect((await sendMail(t.liveKey, mailBody(t.from, { from: { email: "nope" } }))).status).toBe(400);
    expect(await messageCount(t.tenantId)).toBe(before);
  });
});

describe("post /v3/mail/send body encoding and size", () => {
  it("answers malformed JSON with SendGrid's bare Bad Request", async () => {
    await expectErrors(await sendMail(t.liveKey, '{"personalizations": [ '), 400, [
      { message: "Bad Request", field: null, help: null },
    ]);
  });

  it("answers invalid UTF-8 with 415", async () => {
    const json = new TextEncoder().encode(JSON.stringify(mailBody(t.from, { subject: "caf_" })));
    const at = json.indexOf("_".charCodeAt(0));
    const bytes = new Uint8Array(json.length + 1);
    bytes.set(json.subarray(0, at));
    bytes.set([0xc3, 0x28], at); // a two-byte sequence whose continuation byte is missing
    bytes.set(json.subarray(at + 1), at + 2);
    const res = await call("/v3/mail/send", { method: "POST", headers: bearer(t.liveKey), body: bytes });
    await expectErrors(res, 415, [{ message: "Invalid UTF8 in request", field: null, help: null }]);
  });

  it("answers a body over 20 MB with 413", async () => {
    const filler = "A".repeat(20 * 1024 * 1024);
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, { content: [{ type: "text/plain", value: filler }] }),
    );
    await expectErrors(res, 413, [
      {
        message:
          "The JSON payload you have included in your request is too large. The request body, including base64-encoded attachments, may be at most 20 MB.",
        field: null,
        help: `${HELP}#attachments`,
      },
    ]);
  });
});

describe("post /v3/mail/send content the deployment cannot serve", () => {
  it("rejects an unknown template_id", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, { content: undefined, template_id: "d-doesnotexist" }),
    );
    await expectErrors(res, 400, [
      {
        message: "The Template ID must be a valid template id for your account. You provided d-doesnotexist.",
        field: "template_id",
        help: "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send#template-id",
      },
    ]);
  });

  it("rejects a template_id without the d- prefix as a validation error", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, { content: undefined, template_id: "legacy-uuid" }),
    );
    await expectErrors(res, 400, [
      { message: "The template_id must start with 'd-'", field: "template_id", help: `${HELP}#template-id` },
    ]);
  });

  it("accepts other content types after text/plain and text/html, and carries them in the job", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        content: [
          { type: "text/plain", value: "plain" },
          { type: "text/html", value: "<p>html</p>" },
          { type: "text/x-amp-html", value: "<!doctype html><html ⚡4email></html>" },
          { type: "text/calendar", value: "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR" },
        ],
      }),
    );
    expect(res.status, await res.clone().text()).toBe(202);
  });

  it("refuses a content type that cannot be a MIME part, or a type sent twice (ScaiSend's 400s)", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        content: [
          { type: "text/plain", value: "plain" },
          { type: "text/html", value: "<p>a</p>" },
          { type: "multipart/mixed", value: "x" },
          { type: "calendar", value: "x" },
          { type: "TEXT/HTML", value: "<p>b</p>" },
        ],
      }),
    );
    await expectErrors(res, 400, [
      {
        message:
          'The content type "multipart/mixed" cannot be sent as a content block: multipart and message types need a structure of their own; send it as an attachment.',
        field: "content.2.type",
        help: `${HELP}#content.type`,
      },
      {
        message: 'The content type "calendar" is not a MIME type of the form type/subtype (RFC 2045).',
        field: "content.3.type",
        help: `${HELP}#content.type`,
      },
      {
        message: 'The content type "TEXT/HTML" appears more than once; each content type may be sent once.',
        field: "content.4.type",
        help: `${HELP}#content.type`,
      },
    ]);
  });

  it("refuses such a content type in sandbox mode too (same validation as live)", async () => {
    const res = await sendMail(
      t.testKey,
      mailBody(t.from, {
        content: [
          { type: "text/plain", value: "plain" },
          { type: "message/rfc822", value: "{}" },
        ],
      }),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: { field: string }[] }).errors[0]!.field).toBe("content.1.type");
  });
});

// Issue 6: the edge accepted headers the origin refused (202, then `failed`), accepted fields it then
// ignored, and answered a field too large for D1 with a 500.

describe("post /v3/mail/send refuses headers only the origin writes", () => {
  it.each(["Date", "Message-ID", "MIME-Version", "Sender", "Return-Path", "Authentication-Results"])(
    "a custom %s header → 400 reserved, at either level, nothing stored",
    async (name) => {
      const before = await messageCount(t.tenantId);
      const res = await sendMail(
        t.liveKey,
        mailBody(t.from, {
          headers: { [name]: "x" },
          personalizations: [{ to: [{ email: "rcpt@example.net" }], headers: { [name.toUpperCase()]: "y" } }],
        }),
      );
      await expectErrors(res, 400, [
        {
          message: "Header cannot be one of the reserved keys.",
          field: `personalizations.0.headers.${name.toUpperCase()}`,
          help: `${HELP}#personalizations.headers`,
        },
        {
          message: "Header cannot be one of the reserved keys.",
          field: `headers.${name}`,
          help: `${HELP}#headers`,
        },
      ]);
      expect(await messageCount(t.tenantId)).toBe(before);
    },
  );
});

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
const notSupported = (field: string, what: string, fix: string, anchor = field) => ({
  message: `${what} not supported yet by this deployment; ${fix}.`,
  field,
  help: `${HELP}#${anchor.replaceAll("_", "-")}`,
});

describe("post /v3/mail/send refuses fields it would not honour", () => {
  it("a future send_at (both levels) is honoured now, so a key without mail.schedule gets 403, nothing stored", async () => {
    const before = await messageCount(t.tenantId);
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "rcpt@example.net" }], send_at: inAnHour() }],
        send_at: inAnHour(),
      }),
    );
    await expectErrors(res, 403, [
      { message: "Missing required scope: mail.schedule", field: "send_at", help: null },
    ]);
    expect(await messageCount(t.tenantId)).toBe(before);
  });

  it("dynamic_template_data and every enabled setting that is not built (asm is honoured: suppressions.hub.test.ts)", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "rcpt@example.net" }], dynamic_template_data: { name: "Ann" } }],
        mail_settings: {
          spam_check: { enable: true, threshold: 5 },
          sandbox_mode: { enable: false },
          bypass_list_management: { enable: true },
        },
      }),
    );
    await expectErrors(res, 400, [
      {
        message:
          "Dynamic template data is used only with a dynamic template (a template_id starting with d-); remove dynamic_template_data or send with a dynamic template.",
        field: "personalizations.0.dynamic_template_data",
        help: `${HELP}#personalizations.dynamic-template-data`,
      },
      {
        message:
          "The spam check mail setting is retired (as at SendGrid) and this deployment does not score outgoing mail for spam; remove mail_settings.spam_check or set its enable to false.",
        field: "mail_settings.spam_check",
        help: `${HELP}#mail-settings.spam-check`,
      },
    ]);
  });

  it("accepts what asks for nothing unbuilt: a past send_at, settings turned off, bypass flags, empty attachments", async () => {
    const res = await sendMail(
      t.testKey,
      mailBody(t.from, {
        send_at: 1,
        attachments: [],
        mail_settings: { footer: { enable: false }, bypass_list_management: { enable: true } },
        tracking_settings: { click_tracking: { enable: false }, open_tracking: { enable: false } },
        custom_args: { order: "42" },
        categories: ["receipts"],
      }),
    );
    expect(res.status, await res.text()).toBe(202);
  });

  it("a malformed value still gets SendGrid's own message, not 'not supported'", async () => {
    const res = await sendMail(t.liveKey, mailBody(t.from, { send_at: "tomorrow", attachments: [{}] }));
    const body = (await res.json()) as { errors: { field: string; message: string }[] };
    expect(res.status).toBe(400);
    expect(body.errors).toContainEqual(
      expect.objectContaining({
        field: "send_at",
        message:
          "The `send_at` parameter is expecting a Unix timestamp as an integer. We will send immediately if you include a `send_at` timestamp that is in the past.",
      }),
    );
    expect(body.errors).toContainEqual(
      expect.objectContaining({
        field: "attachments.0.content",
        message: "The attachment content must be a string at least one character in length.",
      }),
    );
    expect(body.errors.map((e) => e.message).join(" ")).not.toContain("not supported");
  });
});

describe("post /v3/mail/send size limits: too large is a 4xx in SendGrid's shape, never a 500", () => {
  it("a 2.2 MB subject → 400 at subject, nothing stored", async () => {
    const before = await messageCount(t.tenantId);
    const res = await sendMail(t.liveKey, mailBody(t.from, { subject: "s".repeat(2_200_000) }));
    await expectErrors(res, 400, [
      {
        message: "The subject may be at most 16,384 bytes long (UTF-8).",
        field: "subject",
        help: `${HELP}#subject`,
      },
    ]);
    expect(await messageCount(t.tenantId)).toBe(before);
  });

  it("a 1.5 MB header plus 690 KB of HTML → 400 at the header", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        headers: { "X-Big": "h".repeat(1_500_000) },
        content: [{ type: "text/html", value: `<p>${"x".repeat(690 * 1024)}</p>` }],
      }),
    );
    await expectErrors(res, 400, [
      {
        message: 'The value of the header "X-Big" may be at most 16,384 bytes long (UTF-8).',
        field: "headers.X-Big",
        help: `${HELP}#headers`,
      },
    ]);
  });

  it("headers within the limit at each level but over it once merged → 400 at the personalization's headers", async () => {
    const half = (prefix: string) =>
      Object.fromEntries(Array.from({ length: 3 }, (_, i) => [`X-${prefix}${i}`, "v".repeat(12_000)]));
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        headers: half("Top"),
        personalizations: [{ to: [{ email: "rcpt@example.net" }], headers: half("Own") }],
      }),
    );
    const body = (await res.json()) as { errors: { field: string; message: string }[] };
    expect(res.status).toBe(400);
    expect(body.errors).toEqual([
      {
        field: "personalizations.0.headers",
        message: expect.stringMatching(
          /^The headers of personalization 0, merged with the top-level headers, total 72\d{3} bytes; at most 65536 bytes/,
        ),
        help: `${HELP}#personalizations.headers`,
      },
    ]);
  });

  it("substitutions that grow the subject past its limit → 400, without building the large string", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        subject: "-n-".repeat(5000),
        personalizations: [
          { to: [{ email: "rcpt@example.net" }], substitutions: { "-n-": "N".repeat(9000) } },
        ],
      }),
    );
    await expectErrors(res, 400, [
      {
        message:
          "After substitutions, the subject of personalization 0 is longer than 16384 bytes (UTF-8), the most this deployment accepts.",
        field: "personalizations.0.subject",
        help: `${HELP}#personalizations.subject`,
      },
    ]);
  });

  it("substitutions that grow the content past 20 MB → 413", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        content: [{ type: "text/plain", value: "-n-".repeat(3_000) }],
        personalizations: [
          { to: [{ email: "rcpt@example.net" }], substitutions: { "-n-": "N".repeat(9000) } },
        ],
      }),
    );
    await expectErrors(res, 413, [
      {
        message: `The message content of personalization 0 is over ${20 * 1024 * 1024} bytes; this deployment accepts at most ${20 * 1024 * 1024} bytes of text and HTML per message.`,
        field: "content",
        help: null,
      },
    ]);
  });

  it("a message whose addresses alone outgrow a link frame → 413 at its personalization", async () => {
    // Every field within its own limit: 1,000 recipients and 1,000 reply-to addresses of 320
    // characters with 256-byte names, and 700 KiB of text. The text travels by reference (R2),
    // the addresses cannot; the D1 row (without the text) fits.
    const long = (i: number, tag: string) =>
      `${tag}${String(i).padStart(4, "0")}${"a".repeat(54)}@${`${"b".repeat(63)}.`.repeat(4)}com`;
    const addresses = (tag: string) =>
      Array.from({ length: 1000 }, (_, i) => ({ email: long(i, tag), name: "n".repeat(256) }));
    const res = await sendMail(
      t.testKey,
      mailBody(t.from, {
        personalizations: [{ to: addresses("t") }],
        reply_to_list: addresses("r"),
        content: [{ type: "text/plain", value: "a".repeat(700 * 1024) }],
      }),
    );
    const text = await res.text();
    expect(res.status, text).toBe(413);
    expect(JSON.parse(text)).toEqual({
      errors: [
        {
          field: "personalizations.0",
          message: expect.stringMatching(
            /^The message of personalization 0 is \d+ bytes as a delivery job; at most 983616 bytes fit/,
          ),
          help: `${HELP}#personalizations`,
        },
      ],
    });
  });

  it("a body that JSON escaping would make too large for a frame travels by reference → 202", async () => {
    // 600 KiB of quotes: 614,400 bytes stored, twice that once escaped into the job's JSON, more
    // than one link frame holds; measured escaped, it goes to R2 instead of failing at the hub.
    const before = await messageCount(t.tenantId);
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, { content: [{ type: "text/plain", value: '"'.repeat(600 * 1024) }] }),
    );
    expect(res.status, await res.text()).toBe(202);
    expect(await messageCount(t.tenantId)).toBe(before + 1);
  });

  it("a request whose messages together would store more than 20 MB → 413 at personalizations", async () => {
    const res = await sendMail(
      t.testKey,
      mailBody(t.from, {
        // Substitutions make each body its own (identical bodies are stored once).
        personalizations: Array.from({ length: 30 }, (_, i) => ({
          to: [{ email: `r${i}@example.net` }],
          substitutions: { "-n-": String(i) },
        })),
        content: [{ type: "text/plain", value: `${"a".repeat(700 * 1024)}-n-` }],
      }),
    );
    const text = await res.text();
    expect(res.status, text).toBe(413);
    expect((JSON.parse(text) as { errors: { field: string }[] }).errors.map((e) => e.field)).toEqual([
      "personalizations",
    ]);
  });
});
