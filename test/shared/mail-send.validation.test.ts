import { MailService } from "@sendgrid/mail";
import { classes as sendgridHelpers } from "@sendgrid/helpers";
import { describe, expect, it } from "vitest";
import { RESERVED_HEADER_NAMES } from "../../shared/mail/headers.ts";
import {
  MAIL_SEND_DOCS_URL,
  MAX_CONTENT_TYPE_LENGTH,
  MAX_HEADER_NAME_LENGTH,
  MAX_HEADER_VALUE_BYTES,
  MAX_HEADERS_BYTES,
  MAX_MAIL_SEND_BYTES,
  MAX_NAME_BYTES,
  MAX_SECTIONS_BYTES,
  MAX_SUBJECT_BYTES,
  MESSAGES,
  PAYLOAD_TOO_LARGE_MESSAGE,
  helpUrl,
  isBase64,
  malformedJsonError,
  notSupportedErrors,
  payloadTooLargeError,
  validateMailSend,
  type MailSend,
  type SendGridFieldError,
} from "../../shared/sendgrid/mail-send.ts";
import { utf8ByteLength } from "../../shared/utf8.ts";

// Fixed clock: 2024-01-01T00:00:00Z.
const NOW_MS = Date.UTC(2024, 0, 1);
const NOW = NOW_MS / 1000;
const H72 = 72 * 3600;

type Body = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test bodies are free-form JSON

/** Smallest body that passes. */
function base(): Body {
  return {
    personalizations: [{ to: [{ email: "to@example.com", name: "To" }] }],
    from: { email: "from@example.com", name: "From" },
    subject: "Hello",
    content: [{ type: "text/plain", value: "Hi" }],
  };
}

const p0 = (b: Body): Body => b.personalizations[0];
const err = (field: string, message: string, anchor: string): SendGridFieldError => ({
  message,
  field,
  help: `https://scaisend.scailabs.ai/docs/06-reference/02-mail-send#${anchor}`,
});
const errorsOf = (body: unknown, now: number | Date = NOW_MS): SendGridFieldError[] => {
  const r = validateMailSend(body, now);
  return r.ok ? [] : r.errors;
};
const emails = (n: number, prefix = "r"): { email: string }[] =>
  Array.from({ length: n }, (_, i) => ({ email: `${prefix}${i}@example.com` }));
/** 324 chars, syntactically valid otherwise: 64-char local part and four 63-char labels. */
const LONG_EMAIL = `${"a".repeat(64)}@${`${"b".repeat(63)}.`.repeat(4)}com`;

const { Attachment } = sendgridHelpers;

/** SendGrid's answer for a JSON null where a field has a type. */
const nullType = (expected: string) => `Invalid type. Expected: ${expected}, given: null.`;

/** One mutation of a valid body → exactly one error. */
type Case = [name: string, mutate: (b: Body) => void, field: string, message: string, anchor: string];

function runCases(cases: Case[]) {
  it.each(cases)("%s", (_name, mutate, field, message, anchor) => {
    const body = base();
    mutate(body);
    expect(errorsOf(body)).toEqual([err(field, message, anchor)]);
  });
}

describe("validateMailSend accepts", () => {
  it("the minimal body and returns the parsed value", () => {
    const r = validateMailSend(base(), NOW_MS);
    expect(r).toEqual({ ok: true, value: base() });
  });

  it("the SendGrid docs kitchen-sink body (template_id dropped: ScaiSend forbids it with content, attachment made real base64)", () => {
    // From the v3 Mail Send reference example; placeholders that are not valid values were filled in.
    const body = {
      personalizations: [
        {
          to: [
            { email: "john_doe@example.com", name: "John Doe" },
            { email: "julia_doe@example.com", name: "Julia Doe" },
          ],
          cc: [{ email: "jane_doe@example.com", name: "Jane Doe" }],
          bcc: [{ email: "james_doe@example.com", name: "Jim Doe" }],
          subject: "Hello, World!",
          headers: { "X-Accept-Language": "en", "X-Mailer": "MyApp" },
          substitutions: { "%fname%": "recipient", "%CustomerID%": "CUSTOMER ID GOES HERE" },
          custom_args: {
            "New Argument 1": "New Value 1",
            activationAttempt: "1",
            customerAccountNumber: "[CUSTOMER ACCOUNT NUMBER GOES HERE]",
          },
          send_at: 1409348513,
        },
        {
          from: { email: "sales@example.com", name: "Example Sales Team" },
          to: [{ email: "janice_doe@example.com", name: "Janice Doe" }],
          bcc: [{ email: "jordan_doe@example.com", name: "Jordan Doe" }],
        },
      ],
      from: { email: "orders@example.com", name: "Example Order Confirmation" },
      reply_to: { email: "customer_service@example.com", name: "Example Customer Service Team" },
      subject: "Your Example Order Confirmation",
      content: [
        { type: "text/plain", value: "Hello from Example." },
        {
          type: "text/html",
          value: "<p>Hello from Example Logistics! Your order is <strong>on its way</strong>.</p>",
        },
      ],
      attachments: [
        {
          content: "PCFET0NUWVBFIGh0bWw+PGh0bWw+PC9odG1sPg==",
          filename: "index.html",
          type: "text/html",
          disposition: "attachment",
        },
        {
          content: "iVBORw0KGgo=",
          filename: "logo.png",
          type: "image/png",
          disposition: "inline",
          content_id: "logo",
        },
      ],
      categories: ["cake", "pie", "baking"],
      sections: { "%section1%": "Substitution for Section 1 Tag" },
      headers: { "X-Global": "1" },
      custom_args: { campaign: "spring" },
      send_at: 1617260400,
      batch_id: "AsdFgHjklQweRTYuIopzXcVBNm0aSDfGHjklmZcVbNMqWert1znmOP2asDFjkl",
      asm: { group_id: 12345, groups_to_display: [12345] },
      ip_pool_name: "transactional email",
      mail_settings: {
        bypass_list_management: { enable: false },
        footer: { enable: false, text: "footer", html: "<p>footer</p>" },
        sandbox_mode: { enable: false },
        bcc: { enable: true, email: "archive@example.com" },
        spam_check: { enable: true, threshold: 3, post_to_url: "https://spamcatcher.example.com" },
      },
      tracking_settings: {
        click_tracking: { enable: true, enable_text: false },
        open_tracking: { enable: true, substitution_tag: "%open-track%" },
        subscription_tracking: {
          enable: false,
          text: "unsub",
          html: "<p>unsub</p>",
          substitution_tag: "%unsub%",
        },
        ganalytics: {
          enable: true,
          utm_source: "s",
          utm_medium: "m",
          utm_term: "t",
          utm_content: "c",
          utm_campaign: "x",
        },
      },
    };
    const r = validateMailSend(body, NOW_MS);
    expect(r.ok ? [] : r.errors).toEqual([]);
    expect(r.ok && r.value).toEqual(body);
  });

  it("a dynamic-template body without subject and content", () => {
    const body = base();
    delete body.subject;
    delete body.content;
    body.template_id = "d-13b8f94fbcae4ec6b75270d6cb59f932";
    p0(body).dynamic_template_data = { name: "Ann", items: [{ sku: 1 }], nested: { ok: true } };
    expect(errorsOf(body)).toEqual([]);
  });

  it("content: [] together with template_id (treated as no content)", () => {
    const body = { ...base(), template_id: "d-abc", content: [] };
    expect(errorsOf(body)).toEqual([]);
  });

  it("a missing top-level subject when every personalization has one", () => {
    const body = base();
    delete body.subject;
    body.personalizations = [
      { to: [{ email: "a@example.com" }], subject: "A" },
      { to: [{ email: "b@example.com" }], subject: "B" },
    ];
    expect(errorsOf(body)).toEqual([]);
  });

  it("text/html alone, and text/plain, text/html, then other types", () => {
    expect(errorsOf({ ...base(), content: [{ type: "text/html", value: "<p>x</p>" }] })).toEqual([]);
    const three = [
      { type: "text/plain", value: "x" },
      { type: "text/html", value: "<p>x</p>" },
      { type: "text/calendar", value: "BEGIN:VCALENDAR" },
    ];
    expect(errorsOf({ ...base(), content: three })).toEqual([]);
  });

  it("null inside dynamic_template_data (any JSON) and unknown-looking keys inside every record", () => {
    const body: Body = {
      ...base(),
      headers: { "X-templateId": "1" },
      custom_args: { dynamicTemplateData: "x" },
      sections: { ":foo": "bar" },
    };
    delete body.content;
    body.template_id = "d-0123456789abcdef0123456789abcdef";
    p0(body).dynamic_template_data = { missing: null, list: [null], nested: { ip_warmup: null } };
    p0(body).substitutions = { extra: "x" };
    p0(body).headers = { "X-Extra": "y" };
    p0(body).custom_args = { extra: "z" };
    expect(errorsOf(body)).toEqual([]);
  });

  it("empty containers where SendGrid's schema has no minimum", () => {
    const body = {
      ...base(),
      categories: [],
      headers: {},
      attachments: [],
      reply_to_list: [],
      mail_settings: {},
      tracking_settings: { click_tracking: {} },
      sections: {},
    };
    Object.assign(p0(body), { cc: [], bcc: [], headers: {}, substitutions: {} });
    expect(errorsOf(body)).toEqual([]);
  });

  it("send_at in the past and exactly 72 hours ahead, at both levels", () => {
    expect(errorsOf({ ...base(), send_at: 1 })).toEqual([]);
    const body = { ...base(), send_at: NOW + H72 };
    p0(body).send_at = NOW + H72;
    expect(errorsOf(body)).toEqual([]);
  });

  it("a Date for now", () => {
    expect(errorsOf({ ...base(), send_at: NOW + H72 }, new Date(NOW_MS))).toEqual([]);
    expect(errorsOf({ ...base(), send_at: NOW + H72 + 1 }, new Date(NOW_MS))).toHaveLength(1);
  });

  it("exactly 1000 personalizations and exactly 1000 recipients", () => {
    const many = { ...base(), personalizations: emails(1000).map((e) => ({ to: [e] })) };
    expect(errorsOf(many)).toEqual([]);
    const one = {
      ...base(),
      personalizations: [{ to: emails(500, "t"), cc: emails(300, "c"), bcc: emails(200, "b") }],
    };
    expect(errorsOf(one)).toEqual([]);
  });

  it("the same address in two different personalizations", () => {
    const body = {
      ...base(),
      personalizations: [{ to: [{ email: "a@example.com" }] }, { to: [{ email: "a@example.com" }] }],
    };
    expect(errorsOf(body)).toEqual([]);
  });

  it("header names that only look reserved, and headers that are merely unusual", () => {
    const body = {
      ...base(),
      headers: { "X-To": "a", "List-Unsubscribe": "<mailto:u@example.com>", "X-Empty": "" },
    };
    expect(errorsOf(body)).toEqual([]);
  });

  it("10 categories, 10 attachments, 25 ASM groups, 255-char category", () => {
    const att = { content: "dGVzdA==", filename: "a.txt" };
    const body = {
      ...base(),
      categories: [...Array.from({ length: 9 }, (_, i) => `c${i}`), "x".repeat(255)],
      attachments: Array.from({ length: 10 }, () => ({ ...att })),
      asm: { group_id: 1, groups_to_display: Array.from({ length: 25 }, (_, i) => i) },
    };
    expect(errorsOf(body)).toEqual([]);
  });
});

describe("validateMailSend: request-level shape", () => {
  it.each([
    [null, "null"],
    [[], "array"],
    ["x", "string"],
    [42, "integer"],
  ])("rejects a non-object body %j", (body, given) => {
    expect(validateMailSend(body)).toEqual({
      ok: false,
      errors: [{ message: `Invalid type. Expected: object, given: ${given}.`, field: null, help: null }],
    });
  });

  it("exports SendGrid's malformed-JSON error", () => {
    expect(malformedJsonError()).toEqual({ message: "Bad Request", field: null, help: null });
  });

  it("exports the 20 MB limit and its 413 error", () => {
    expect(MAX_MAIL_SEND_BYTES).toBe(20_971_520);
    expect(payloadTooLargeError()).toEqual({
      message: PAYLOAD_TOO_LARGE_MESSAGE,
      field: null,
      help: "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send#attachments",
    });
    expect(PAYLOAD_TOO_LARGE_MESSAGE).toContain("20 MB");
  });
});

describe("validateMailSend: personalizations and recipients", () => {
  runCases([
    [
      "personalizations missing",
      (b) => delete b.personalizations,
      "personalizations",
      MESSAGES.personalizationsRequired,
      "personalizations",
    ],
    [
      "personalizations empty",
      (b) => (b.personalizations = []),
      "personalizations",
      "You must have at least one personalization.",
      "personalizations",
    ],
    [
      "personalizations not an array",
      (b) => (b.personalizations = { to: [] }),
      "personalizations",
      "Invalid type. Expected: array, given: object.",
      "personalizations",
    ],
    [
      "personalization not an object",
      (b) => b.personalizations.push("x"),
      "personalizations.1",
      "Invalid type. Expected: object, given: string.",
      "personalizations",
    ],
    [
      "to missing",
      (b) => delete p0(b).to,
      "personalizations.0.to",
      "The to parameter is required for all personalization objects.",
      "personalizations.to",
    ],
    ["to empty", (b) => (p0(b).to = []), "personalizations.0.to", MESSAGES.toRequired, "personalizations.to"],
    [
      "to email invalid (live message)",
      (b) => (p0(b).to[0].email = "not-an-email"),
      "personalizations.0.to.0.email",
      "Does not contain a valid address.",
      "personalizations.to.email",
    ],
    [
      "to email as display form",
      (b) => (p0(b).to[0].email = "To <to@example.com>"),
      "personalizations.0.to.0.email",
      "Does not contain a valid address.",
      "personalizations.to.email",
    ],
    [
      "to email missing",
      (b) => delete p0(b).to[0].email,
      "personalizations.0.to.0.email",
      'The to array must at least have an `email` parameter with a valid email address and it may also contain a `name` parameter. e.g. {"email": "example@example.com"} or {"email": "example@example.com", "name": "Example Recipient"}',
      "personalizations.to.email",
    ],
    [
      "cc email missing",
      (b) => (p0(b).cc = [{ name: "x" }]),
      "personalizations.0.cc.0.email",
      MESSAGES.recipientRequired("cc"),
      "personalizations.cc.email",
    ],
    [
      "bcc email invalid",
      (b) => (p0(b).bcc = [{ email: "a@b" }]),
      "personalizations.0.bcc.0.email",
      MESSAGES.recipientInvalid,
      "personalizations.bcc.email",
    ],
    [
      "to email over 320 chars",
      (b) => (p0(b).to[0].email = LONG_EMAIL),
      "personalizations.0.to.0.email",
      "The To email exceeds the maximum total length of 320 characters",
      "personalizations.to.email",
    ],
    [
      "cc email over 320 chars",
      (b) => (p0(b).cc = [{ email: LONG_EMAIL }]),
      "personalizations.0.cc.0.email",
      "The CC email exceeds the maximum total length of 320 characters",
      "personalizations.cc.email",
    ],
    [
      "bcc email over 320 chars",
      (b) => (p0(b).bcc = [{ email: LONG_EMAIL }]),
      "personalizations.0.bcc.0.email",
      "The BCC email exceeds the maximum total length of 320 characters",
      "personalizations.bcc.email",
    ],
    [
      "to name with comma",
      (b) => (p0(b).to[0].name = "Doe, John"),
      "personalizations.0.to.0.name",
      "The to name cannot contain ';' or ',' characters.",
      "personalizations.to.name",
    ],
    [
      "cc name with semicolon",
      (b) => (p0(b).cc = [{ email: "c@example.com", name: "a;b" }]),
      "personalizations.0.cc.0.name",
      "The cc name cannot contain ';' or ',' characters.",
      "personalizations.cc.name",
    ],
    [
      "to name not a string",
      (b) => (p0(b).to[0].name = 7),
      "personalizations.0.to.0.name",
      "Invalid type. Expected: string, given: integer.",
      "personalizations.to.name",
    ],
    [
      "cc not an array",
      (b) => (p0(b).cc = { email: "c@example.com" }),
      "personalizations.0.cc",
      "Invalid type. Expected: array, given: object.",
      "personalizations.cc",
    ],
    [
      "duplicate across to and cc (exact live message, case-insensitive)",
      (b) => (p0(b).cc = [{ email: "TO@example.com" }]),
      "personalizations.0",
      "Each email address in the personalization block should be unique between to, cc, and bcc. We found the first duplicate instance of [TO@example.com] in the personalizations.0.cc field.",
      "personalizations",
    ],
    [
      "duplicate within to of the second personalization",
      (b) => b.personalizations.push({ to: [{ email: "x@example.com" }, { email: "x@example.com" }] }),
      "personalizations.1",
      MESSAGES.duplicateRecipient("x@example.com", "personalizations.1.to"),
      "personalizations",
    ],
    [
      "duplicate between cc and bcc",
      (b) => Object.assign(p0(b), { cc: [{ email: "d@example.com" }], bcc: [{ email: "d@example.com" }] }),
      "personalizations.0",
      MESSAGES.duplicateRecipient("d@example.com", "personalizations.0.bcc"),
      "personalizations",
    ],
    [
      "personalization from invalid",
      (b) => (p0(b).from = { email: "nope" }),
      "personalizations.0.from.email",
      "The from email does not contain a valid address.",
      "personalizations.from.email",
    ],
    [
      "personalization subject empty",
      (b) => (p0(b).subject = ""),
      "personalizations.0.subject",
      MESSAGES.subjectInvalid,
      "personalizations.subject",
    ],
    [
      "personalization dynamic_template_data not an object",
      (b) => (p0(b).dynamic_template_data = [1]),
      "personalizations.0.dynamic_template_data",
      "Invalid type. Expected: object, given: array.",
      "personalizations.dynamic-template-data",
    ],
  ]);

  it("rejects 1001 personalizations with SendGrid's counted message (and no second error for the same field)", () => {
    const body = { ...base(), personalizations: emails(1001).map((e) => ({ to: [e] })) };
    expect(errorsOf(body)).toEqual([
      err(
        "personalizations",
        "The personalization block is limited to 1000 personalizations per API request. You have provided 1001 personalizations. Please consider splitting this into multiple requests and resending your request.",
        "personalizations",
      ),
    ]);
  });

  it("rejects 1001 recipients summed across personalizations and to/cc/bcc", () => {
    const body = {
      ...base(),
      personalizations: [
        { to: emails(400, "a"), cc: emails(100, "b") },
        { to: emails(300, "c"), bcc: emails(201, "d") },
      ],
    };
    expect(errorsOf(body)).toEqual([
      err(
        "personalizations",
        "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
        "personalizations",
      ),
    ]);
  });
});

describe("validateMailSend: from, reply_to, reply_to_list", () => {
  runCases([
    [
      "from missing (reported at from.email, as live)",
      (b) => delete b.from,
      "from.email",
      MESSAGES.fromRequired,
      "from.email",
    ],
    [
      "from null (a type error, as for any field)",
      (b) => (b.from = null),
      "from",
      nullType("object"),
      "from",
    ],
    [
      "from without email",
      (b) => (b.from = { name: "x" }),
      "from.email",
      MESSAGES.fromRequired,
      "from.email",
    ],
    [
      "from email invalid (live message)",
      (b) => (b.from.email = "from@"),
      "from.email",
      "The from email does not contain a valid address.",
      "from.email",
    ],
    [
      "from email over 320 chars",
      (b) => (b.from.email = LONG_EMAIL),
      "from.email",
      "The From email exceeds the maximum total length of 320 characters",
      "from.email",
    ],
    [
      "from not an object",
      (b) => (b.from = "from@example.com"),
      "from",
      "Invalid type. Expected: object, given: string.",
      "from",
    ],
    [
      "reply_to without email",
      (b) => (b.reply_to = { name: "x" }),
      "reply_to.email",
      MESSAGES.replyToRequired,
      "reply-to.email",
    ],
    [
      "reply_to email invalid",
      (b) => (b.reply_to = { email: "x" }),
      "reply_to.email",
      MESSAGES.replyToInvalid,
      "reply-to.email",
    ],
    [
      "reply_to email too long",
      (b) => (b.reply_to = { email: LONG_EMAIL }),
      "reply_to.email",
      "The Reply-To email exceeds the maximum total length of 320 characters",
      "reply-to.email",
    ],
    [
      "reply_to with reply_to_list",
      (b) =>
        Object.assign(b, {
          reply_to: { email: "r@example.com" },
          reply_to_list: [{ email: "s@example.com" }],
        }),
      "reply_to",
      "`reply_to` is mutually exclusive with `reply_to_list`.",
      "reply-to",
    ],
    [
      "reply_to_list email invalid",
      (b) => (b.reply_to_list = [{ email: "r@example.com" }, { email: "bad" }]),
      "reply_to_list.1.email",
      "The `reply_to_list` email does not contain a valid address.",
      "reply-to-list.email",
    ],
    [
      "reply_to_list duplicate",
      (b) => (b.reply_to_list = [{ email: "r@example.com" }, { email: "R@example.com" }]),
      "reply_to_list",
      "Each email address in the `reply_to_list` should be unique.",
      "reply-to-list",
    ],
  ]);

  it("rejects more than 1000 reply_to_list entries", () => {
    expect(errorsOf({ ...base(), reply_to_list: emails(1001) })).toEqual([
      err("reply_to_list", MESSAGES.replyToListTooMany, "reply-to-list"),
    ]);
  });
});

describe("validateMailSend: subject, content, template_id", () => {
  runCases([
    [
      "subject missing (live message)",
      (b) => delete b.subject,
      "subject",
      "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
      "subject",
    ],
    [
      "subject missing and only one of two personalizations has one",
      (b) => b.personalizations.push({ to: [{ email: "b@example.com" }], subject: "B" }) && delete b.subject,
      "subject",
      MESSAGES.subjectRequired,
      "subject",
    ],
    [
      "subject empty",
      (b) => (b.subject = ""),
      "subject",
      "The subject of your email must be a string at least one character in length.",
      "subject",
    ],
    ["subject not a string", (b) => (b.subject = 5), "subject", MESSAGES.subjectInvalid, "subject"],
    [
      "content missing",
      (b) => delete b.content,
      "content",
      "The content param is required unless you are using a transactional template and have defined a template_ID.",
      "content",
    ],
    [
      "content empty",
      (b) => (b.content = []),
      "content",
      "There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.",
      "content",
    ],
    [
      "content an object (live message)",
      (b) => (b.content = { type: "text/plain", value: "x" }),
      "content",
      "Invalid type. Expected: array, given: object.",
      "content",
    ],
    [
      "content value empty (live message)",
      (b) => (b.content[0].value = ""),
      "content.0.value",
      "The content value must be a string at least one character in length.",
      "content.value",
    ],
    [
      "content value missing",
      (b) => delete b.content[0].value,
      "content.0.value",
      "A content value is required, this is the content of the email you are sending.",
      "content.value",
    ],
    [
      "content type missing",
      (b) => delete b.content[0].type,
      "content.0.type",
      "A content type is required, this tells email clients how to display the email.",
      "content.type",
    ],
    [
      "content type not a string",
      (b) => (b.content[0].type = 1),
      "content.0.type",
      "Your content type must be a string with length of at least one character.",
      "content.type",
    ],
    [
      "content type with parameters",
      (b) => (b.content[0].type = "text/plain; charset=utf-8"),
      "content.0.type",
      "Cannot contain ';', or CRLF characters.",
      "content.type",
    ],
    [
      "html before plain",
      (b) => b.content.unshift({ type: "text/html", value: "<p>x</p>" }),
      "content",
      "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain needs to be first, followed by text/html, followed by any other content.",
      "content",
    ],
    [
      "another type between plain and html",
      (b) => b.content.push({ type: "text/x-amp-html", value: "a" }, { type: "text/html", value: "h" }),
      "content",
      MESSAGES.contentOrder,
      "content",
    ],
    [
      "template_id and content (a ScaiSend rule)",
      (b) => (b.template_id = "d-abc"),
      "content",
      MESSAGES.contentWithTemplate,
      "content",
    ],
    [
      "template id neither d- nor a legacy UUID (ScaiSend's message)",
      (b) => Object.assign(b, { template_id: "welcome-mail", content: undefined }),
      "template_id",
      "The template_id must start with 'd-'",
      "template-id",
    ],
    [
      "template_id not a string",
      (b) => Object.assign(b, { template_id: 123, content: undefined }),
      "template_id",
      "The template ID must be a string, you provided [123].",
      "template-id",
    ],
  ]);

  it("a legacy template id (a UUID) is valid, with or without content: its <%body%> takes the content", () => {
    const id = "13b8f94f-bcae-4ec6-b752-70d6cb59f932";
    expect(errorsOf({ ...base(), template_id: id })).toEqual([]);
    expect(errorsOf({ ...base(), template_id: id, content: undefined })).toEqual([]);
  });

  it("is case-insensitive about content types when checking order", () => {
    const body = {
      ...base(),
      content: [
        { type: "TEXT/HTML", value: "h" },
        { type: "Text/Plain", value: "p" },
      ],
    };
    expect(errorsOf(body)).toEqual([err("content", MESSAGES.contentOrder, "content")]);
  });
});

describe("validateMailSend: headers (SendGrid rules + header-injection guard)", () => {
  runCases([
    [
      "top-level value not a string",
      (b) => (b.headers = { "X-Num": 5 }),
      "headers.X-Num",
      "The header values must be strings.",
      "headers",
    ],
    [
      "personalization value not a string",
      (b) => (p0(b).headers = { "X-Bool": true }),
      "personalizations.0.headers.X-Bool",
      "All values of the headers object must be strings.",
      "personalizations.headers",
    ],
    [
      "key with a space",
      (b) => (b.headers = { "X Bad": "v" }),
      "headers.X Bad",
      "Header keys cannot contain non-ASCII characters or empty spaces.",
      "headers",
    ],
    [
      "non-ASCII key",
      (b) => (b.headers = { "X-Ümlaut": "v" }),
      "headers.X-Ümlaut",
      MESSAGES.headerKeyChars,
      "headers",
    ],
    [
      "key with a colon",
      (b) => (b.headers = { "X-A:B": "v" }),
      "headers.X-A:B",
      MESSAGES.headerKeyChars,
      "headers",
    ],
    ["empty key", (b) => (b.headers = { "": "v" }), "headers.", MESSAGES.headerKeyChars, "headers"],
    [
      "reserved key, any case",
      (b) => (b.headers = { "reply-TO": "x@example.com" }),
      "headers.reply-TO",
      "Header cannot be one of the reserved keys.",
      "headers",
    ],
    [
      "reserved DKIM-Signature in a personalization",
      (b) => (p0(b).headers = { "DKIM-Signature": "v=1" }),
      "personalizations.0.headers.DKIM-Signature",
      MESSAGES.headerReserved,
      "personalizations.headers",
    ],
    [
      "duplicate keys differing in case",
      (b) => (b.headers = { "X-A": "1", "x-a": "2" }),
      "headers",
      "The headers cannot contain duplicate keys.",
      "headers",
    ],
    [
      "headers not an object",
      (b) => (b.headers = ["X-A: 1"]),
      "headers",
      "Invalid type. Expected: object, given: array.",
      "headers",
    ],
  ]);

  it.each([
    ["CRLF + Bcc in a value", { "X-Evil": "x\r\nBcc: victim@example.com" }, "X-Evil"],
    ["bare LF in a value", { "X-Evil": "x\nSubject: spoof" }, "X-Evil"],
    ["bare CR in a value", { "X-Evil": "x\rTo: victim@example.com" }, "X-Evil"],
    ["CRLF in a key", { "X-Evil\r\nBcc": "victim@example.com" }, "X-Evil\r\nBcc"],
  ])("rejects header injection: %s", (_name, headers, key) => {
    for (const level of ["top", "personalization"] as const) {
      const body = base();
      if (level === "top") body.headers = headers;
      else p0(body).headers = headers;
      const prefix = level === "top" ? "headers" : "personalizations.0.headers";
      expect(errorsOf(body)).toEqual([
        err(`${prefix}.${key}`, MESSAGES.headerCrlf(key), prefix.replace(/\.0/, "")),
      ]);
      expect(MESSAGES.headerCrlf(key)).toMatch(/cannot contain CR or LF/);
    }
  });

  it("reports an injection even when another header value has the wrong type", () => {
    const body = { ...base(), headers: { "X-Num": 1, "X-Evil": "a\r\nBcc: v@example.com" } };
    expect(errorsOf(body)).toEqual([
      err("headers.X-Num", MESSAGES.headerValues, "headers"),
      err("headers.X-Evil", MESSAGES.headerCrlf("X-Evil"), "headers"),
    ]);
  });

  it.each([
    [
      "subject",
      (b: Body) => (b.subject = "Hi\r\nBcc: v@example.com"),
      "subject",
      MESSAGES.subjectCrlf,
      "subject",
    ],
    [
      "personalization subject",
      (b: Body) => (p0(b).subject = "Hi\nX: y"),
      "personalizations.0.subject",
      MESSAGES.subjectCrlf,
      "personalizations.subject",
    ],
    [
      "from name",
      (b: Body) => (b.from.name = "Eve\r\nBcc: v@example.com"),
      "from.name",
      "The from name cannot contain CRLF characters.",
      "from.name",
    ],
    [
      "to name",
      (b: Body) => (p0(b).to[0].name = "Eve\nBcc: v@example.com"),
      "personalizations.0.to.0.name",
      MESSAGES.nameCrlf("to"),
      "personalizations.to.name",
    ],
    [
      "reply_to name",
      (b: Body) => (b.reply_to = { email: "r@example.com", name: "R\r\n" }),
      "reply_to.name",
      MESSAGES.nameCrlf("reply_to"),
      "reply-to.name",
    ],
    [
      "reply_to_list name",
      (b: Body) => (b.reply_to_list = [{ email: "r@example.com", name: "R\n" }]),
      "reply_to_list.0.name",
      MESSAGES.nameCrlf("reply_to_list"),
      "reply-to-list.name",
    ],
    [
      "content type",
      (b: Body) => (b.content[0].type = "text/plain\r\nBcc: v@example.com"),
      "content.0.type",
      MESSAGES.contentTypeChars,
      "content.type",
    ],
    [
      "attachment filename",
      (b: Body) => (b.attachments = [{ content: "dGVzdA==", filename: "a.txt\r\nBcc: v@example.com" }]),
      "attachments.0.filename",
      "The filename of your attachment cannot contain CRLF characters.",
      "attachments.filename",
    ],
    [
      "attachment type",
      (b: Body) => (b.attachments = [{ content: "dGVzdA==", filename: "a.txt", type: "text/plain\nX: y" }]),
      "attachments.0.type",
      "The type cannot contain ';', or CRLF characters.",
      "attachments.type",
    ],
    [
      "attachment content_id",
      (b: Body) =>
        (b.attachments = [
          { content: "dGVzdA==", filename: "a.png", disposition: "inline", content_id: "x\r\ny" },
        ]),
      "attachments.0.content_id",
      "The content ID of your attachment cannot contain CRLF characters.",
      "attachments.content-id",
    ],
    [
      "category",
      (b: Body) => (b.categories = ["a\r\nb"]),
      "categories.0",
      MESSAGES.categoryCrlf,
      "categories",
    ],
  ])("rejects CR/LF in the %s", (_name, mutate, field, message, anchor) => {
    const body = base();
    mutate(body);
    expect(errorsOf(body)).toEqual([err(field, message, anchor)]);
  });
});

describe("validateMailSend: custom_args, substitutions, sections", () => {
  runCases([
    [
      "custom_args value not a string",
      (b) => (b.custom_args = { n: 1 }),
      "custom_args.n",
      "All values of custom arguments object must be strings",
      "custom-args",
    ],
    [
      "personalization custom_args value not a string",
      (b) => (p0(b).custom_args = { n: null }),
      "personalizations.0.custom_args.n",
      MESSAGES.customArgsValues,
      "personalizations.custom-args",
    ],
    [
      "custom_args empty",
      (b) => (b.custom_args = {}),
      "custom_args",
      "`custom_args` cannot be empty.",
      "custom-args",
    ],
    [
      "custom_args a string (the OAS type; clients send objects)",
      (b) => (b.custom_args = "a=b"),
      "custom_args",
      MESSAGES.customArgsValues,
      "custom-args",
    ],
    [
      "substitution value not a string",
      (b) => (p0(b).substitutions = { "-n-": 1 }),
      "personalizations.0.substitutions.-n-",
      "The substitution values must be an object of key/value pairs, where the values are all strings.",
      "personalizations.substitutions",
    ],
    [
      "substitutions an array",
      (b) => (p0(b).substitutions = ["a"]),
      "personalizations.0.substitutions",
      MESSAGES.substitutionsValues,
      "personalizations.substitutions",
    ],
    [
      "section value not a string",
      (b) => (b.sections = { "%s%": 1 }),
      "sections.%s%",
      "The section values must be strings.",
      "sections",
    ],
  ]);

  it("rejects merged custom_args over 10,000 bytes per personalization", () => {
    const body = { ...base(), custom_args: { a: "x".repeat(6000) } };
    p0(body).custom_args = { b: "y".repeat(6000) };
    expect(errorsOf(body)).toEqual([
      err("personalizations.0.custom_args", MESSAGES.customArgsSize, "personalizations.custom-args"),
    ]);
    expect(MESSAGES.customArgsSize).toBe(
      "The combined size of both global and personalization custom arguments may not exceed 10,000 bytes per personalization.",
    );
  });

  it("counts an overridden key once when merging custom_args", () => {
    const body = { ...base(), custom_args: { a: "x".repeat(6000) } };
    p0(body).custom_args = { a: "y".repeat(6000) };
    expect(errorsOf(body)).toEqual([]);
  });

  it("counts bytes, not characters", () => {
    // 3,400 × "€" = 10,200 UTF-8 bytes but only 3,400 characters.
    expect(errorsOf({ ...base(), custom_args: { a: "€".repeat(3400) } })).toEqual([
      err("custom_args", MESSAGES.customArgsSize, "custom-args"),
    ]);
  });

  it("rejects more than 10,000 substitutions", () => {
    const subs = Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`-${i}-`, ""]));
    const body = base();
    p0(body).substitutions = subs;
    expect(errorsOf(body)).toEqual([
      err(
        "personalizations.0.substitutions",
        "You are limited to 10,000 substitutions.",
        "personalizations.substitutions",
      ),
    ]);
  });

  it("rejects substitutions over 10,000 bytes", () => {
    const body = base();
    p0(body).substitutions = { "-a-": "x".repeat(10_000) };
    expect(errorsOf(body)).toEqual([
      err("personalizations.0.substitutions", MESSAGES.substitutionsSize, "personalizations.substitutions"),
    ]);
  });
});

describe("validateMailSend: send_at, categories, attachments, asm, batch, pool", () => {
  runCases([
    [
      "send_at a string",
      (b) => (b.send_at = "1700000000"),
      "send_at",
      "The `send_at` parameter is expecting a Unix timestamp as an integer. We will send immediately if you include a `send_at` timestamp that is in the past.",
      "send-at",
    ],
    ["send_at fractional", (b) => (b.send_at = NOW + 0.5), "send_at", MESSAGES.sendAtType, "send-at"],
    [
      "send_at beyond 72 hours",
      (b) => (b.send_at = NOW + H72 + 1),
      "send_at",
      "Scheduling more than 72 hours in advance is forbidden.",
      "send-at",
    ],
    [
      "personalization send_at beyond 72 hours",
      (b) => (p0(b).send_at = NOW + H72 + 60),
      "personalizations.0.send_at",
      MESSAGES.sendAtTooFar,
      "personalizations.send-at",
    ],
    [
      "11 categories",
      (b) => (b.categories = Array.from({ length: 11 }, (_, i) => `c${i}`)),
      "categories",
      "There is a limit of 10 categories for each email that is sent. You provided 11 categories.",
      "categories",
    ],
    [
      "category of 256 chars",
      (b) => (b.categories = ["x".repeat(256)]),
      "categories.0",
      `Each category must not be longer than 255 characters. [${"x".repeat(256)}] exceeds this limit`,
      "categories",
    ],
    [
      "duplicate category",
      (b) => (b.categories = ["a", "b", "a"]),
      "categories",
      "The categories must be a unique list, and you have included [a] more than once.",
      "categories",
    ],
    [
      "non-ASCII category",
      (b) => (b.categories = ["ok", "café"]),
      "categories.1",
      "Categories can not contain non-ASCII characters.",
      "categories",
    ],
    [
      "category not a string",
      (b) => (b.categories = [1]),
      "categories.0",
      "Categories must be an array of strings.",
      "categories",
    ],
    ["categories a string", (b) => (b.categories = "a"), "categories", MESSAGES.categoriesType, "categories"],
    [
      "11 attachments",
      (b) => (b.attachments = Array.from({ length: 11 }, () => ({ content: "dGVzdA==", filename: "a.txt" }))),
      "attachments",
      "There is a limit of 10 attachments per message. You provided 11 attachments.",
      "attachments",
    ],
    [
      "attachment content not base64 (live message)",
      (b) => (b.attachments = [{ content: "NOT BASE64", filename: "a.txt" }]),
      "attachments.0.content",
      "The attachment content must be base64 encoded.",
      "attachments.content",
    ],
    [
      "second attachment content not base64",
      (b) =>
        (b.attachments = [
          { content: "dGVzdA==", filename: "a.txt" },
          { content: "NOT_BASE64", filename: "b.txt" },
        ]),
      "attachments.1.content",
      MESSAGES.attachmentContentBase64,
      "attachments.content",
    ],
    [
      "attachment content empty",
      (b) => (b.attachments = [{ content: "", filename: "a.txt" }]),
      "attachments.0.content",
      "The attachment content must be a string at least one character in length.",
      "attachments.content",
    ],
    [
      "attachment filename missing",
      (b) => (b.attachments = [{ content: "dGVzdA==" }]),
      "attachments.0.filename",
      "filename is required.",
      "attachments.filename",
    ],
    [
      "attachment filename not a string",
      (b) => (b.attachments = [{ content: "dGVzdA==", filename: 1 }]),
      "attachments.0.filename",
      "The filename of your attachment must be a string.",
      "attachments.filename",
    ],
    [
      "attachment filename too long",
      (b) => (b.attachments = [{ content: "dGVzdA==", filename: `${"a".repeat(252)}.txt` }]),
      "attachments.0.filename",
      MESSAGES.attachmentFilenameLength,
      "attachments.filename",
    ],
    [
      "attachment type with parameters",
      (b) =>
        (b.attachments = [{ content: "dGVzdA==", filename: "a.txt", type: "text/plain; charset=utf-8" }]),
      "attachments.0.type",
      MESSAGES.attachmentTypeChars,
      "attachments.type",
    ],
    [
      "attachment type empty",
      (b) => (b.attachments = [{ content: "dGVzdA==", filename: "a.txt", type: "" }]),
      "attachments.0.type",
      "The attachment type must be a string and at least one character in length.",
      "attachments.type",
    ],
    [
      "attachment disposition unknown",
      (b) => (b.attachments = [{ content: "dGVzdA==", filename: "a.txt", disposition: "download" }]),
      "attachments.0.disposition",
      'The disposition of your attachment can be either "inline" or "attachment". You provided [download].',
      "attachments.disposition",
    ],
    [
      "inline attachment without content_id",
      (b) => (b.attachments = [{ content: "dGVzdA==", filename: "a.png", disposition: "inline" }]),
      "attachments.0.content_id",
      MESSAGES.attachmentContentIdRequired,
      "attachments.content-id",
    ],
    [
      "inline attachment with empty content_id",
      (b) =>
        (b.attachments = [{ content: "dGVzdA==", filename: "a.png", disposition: "inline", content_id: "" }]),
      "attachments.0.content_id",
      MESSAGES.attachmentContentIdRequired,
      "attachments.content-id",
    ],
    [
      "content_id not a string",
      (b) => (b.attachments = [{ content: "dGVzdA==", filename: "a.png", content_id: 5 }]),
      "attachments.0.content_id",
      "The content ID of your attachment must be a string. You provided [5].",
      "attachments.content-id",
    ],
    [
      "asm.group_id a string",
      (b) => (b.asm = { group_id: "1" }),
      "asm.group_id",
      "The ASM group ID must be an integer.",
      "asm.group-id",
    ],
    ["asm.group_id missing", (b) => (b.asm = {}), "asm.group_id", MESSAGES.asmGroupId, "asm.group-id"],
    [
      "asm.groups_to_display with a string",
      (b) => (b.asm = { group_id: 1, groups_to_display: [1, "2"] }),
      "asm.groups_to_display.1",
      "The ASM Group IDs to display must be an array of integers.",
      "asm.groups-to-display",
    ],
    [
      "asm.groups_to_display over 25",
      (b) => (b.asm = { group_id: 1, groups_to_display: Array.from({ length: 26 }, (_, i) => i) }),
      "asm.groups_to_display",
      "There is a limit of 25 unsubscribe groups that can be displayed to a user at a time.",
      "asm.groups-to-display",
    ],
    ["batch_id a number", (b) => (b.batch_id = 5), "batch_id", "The batch_id must be a string.", "batch-id"],
    [
      "ip_pool_name a number",
      (b) => (b.ip_pool_name = 5),
      "ip_pool_name",
      "The name of your IP pool must be a string.",
      "ip-pool-name",
    ],
    [
      "ip_pool_name one char",
      (b) => (b.ip_pool_name = "a"),
      "ip_pool_name",
      MESSAGES.ipPoolLength("a"),
      "ip-pool-name",
    ],
  ]);
});

describe("validateMailSend: mail_settings and tracking_settings", () => {
  it.each([
    [
      "mail_settings",
      "bypass_list_management",
      "The bypass list management enable param should be a boolean value.",
    ],
    [
      "mail_settings",
      "bypass_spam_management",
      "The bypass spam management enable param should be a boolean value.",
    ],
    [
      "mail_settings",
      "bypass_bounce_management",
      "The bypass bounce management enable param should be a boolean value.",
    ],
    [
      "mail_settings",
      "bypass_unsubscribe_management",
      "The bypass unsubscribe management enable param should be a boolean value.",
    ],
    ["mail_settings", "footer", "The footer enable param should be a boolean value."],
    ["mail_settings", "sandbox_mode", "The sandbox mode enable param should be a boolean value."],
    ["mail_settings", "bcc", "The bcc enable param should be a boolean value."],
    ["mail_settings", "spam_check", "The spam check enable param should be a boolean value."],
    ["tracking_settings", "click_tracking", "The click tracking enable param should be a boolean value."],
    ["tracking_settings", "open_tracking", "The open tracking enable param should be a boolean value."],
    [
      "tracking_settings",
      "subscription_tracking",
      "The subscription tracking enable param should be a boolean value.",
    ],
    ["tracking_settings", "ganalytics", "The Google Analytics enable param must be a boolean value."],
  ])("%s.%s.enable must be a boolean", (group, setting, message) => {
    const body = { ...base(), [group]: { [setting]: { enable: "true" } } };
    expect(errorsOf(body)).toEqual([
      err(`${group}.${setting}.enable`, message, `${group}.${setting}.enable`.replaceAll("_", "-")),
    ]);
  });

  runCases([
    [
      "footer text not a string",
      (b) => (b.mail_settings = { footer: { text: 1 } }),
      "mail_settings.footer.text",
      "The text/plain version of your footer should be a string.",
      "mail-settings.footer.text",
    ],
    [
      "footer html not a string",
      (b) => (b.mail_settings = { footer: { html: 1 } }),
      "mail_settings.footer.html",
      "The text/html version of your footer should be a string.",
      "mail-settings.footer.html",
    ],
    [
      "bcc setting enabled without email",
      (b) => (b.mail_settings = { bcc: { enable: true } }),
      "mail_settings.bcc.email",
      "You must include a recipient object when using the bcc mail setting.",
      "mail-settings.bcc.email",
    ],
    [
      "bcc setting with invalid email",
      (b) => (b.mail_settings = { bcc: { enable: true, email: "x" } }),
      "mail_settings.bcc.email",
      MESSAGES.bccSettingEmail,
      "mail-settings.bcc.email",
    ],
    [
      "spam_check threshold 11",
      (b) => (b.mail_settings = { spam_check: { enable: true, threshold: 11 } }),
      "mail_settings.spam_check.threshold",
      MESSAGES.spamCheckThreshold,
      "mail-settings.spam-check.threshold",
    ],
    [
      "spam_check post_to_url ftp",
      (b) => (b.mail_settings = { spam_check: { post_to_url: "ftp://x" } }),
      "mail_settings.spam_check.post_to_url",
      "The `post_to_url` parameter must start with `http://` or `https://`.",
      "mail-settings.spam-check.post-to-url",
    ],
    [
      "mail_settings not an object",
      (b) => (b.mail_settings = true),
      "mail_settings",
      "Invalid type. Expected: object, given: boolean.",
      "mail-settings",
    ],
    [
      "bypass_list_management with another bypass",
      (b) =>
        (b.mail_settings = {
          bypass_list_management: { enable: true },
          bypass_bounce_management: { enable: true },
        }),
      "mail_settings.bypass_list_management",
      MESSAGES.bypassCombination,
      "mail-settings.bypass-list-management",
    ],
    [
      "click_tracking enable_text",
      (b) => (b.tracking_settings = { click_tracking: { enable_text: 1 } }),
      "tracking_settings.click_tracking.enable_text",
      "The click tracking enable text must be a boolean value.",
      "tracking-settings.click-tracking.enable-text",
    ],
    [
      "open_tracking substitution_tag",
      (b) => (b.tracking_settings = { open_tracking: { substitution_tag: 1 } }),
      "tracking_settings.open_tracking.substitution_tag",
      "The open tracking substitution tag must be a string.",
      "tracking-settings.open-tracking.substitution-tag",
    ],
    [
      "subscription_tracking html",
      (b) => (b.tracking_settings = { subscription_tracking: { html: 1 } }),
      "tracking_settings.subscription_tracking.html",
      "The subscription tracking unsubscribe content for text/html messages must be a string.",
      "tracking-settings.subscription-tracking.html",
    ],
    [
      "ganalytics utm_source",
      (b) => (b.tracking_settings = { ganalytics: { utm_source: 1 } }),
      "tracking_settings.ganalytics.utm_source",
      "The Google Analytics utm_source must be a string value.",
      "tracking-settings.ganalytics.utm-source",
    ],
  ]);

  it("allows bypass_list_management when the other bypass flags are off, and the other three together", () => {
    const listOnly = { bypass_list_management: { enable: true }, bypass_spam_management: { enable: false } };
    expect(errorsOf({ ...base(), mail_settings: listOnly })).toEqual([]);
    const threeOthers = {
      bypass_spam_management: { enable: true },
      bypass_bounce_management: { enable: true },
      bypass_unsubscribe_management: { enable: true },
    };
    expect(errorsOf({ ...base(), mail_settings: threeOthers })).toEqual([]);
  });
});

// Strict where SendGrid is strict (the rules in the header of shared/sendgrid/mail-send.ts).

/** A valid body with every optional object present, so any path below can be set. */
function fullBody(): Body {
  const body = base();
  body.reply_to = { email: "reply@example.com" };
  body.attachments = [{ content: "aGk=", filename: "a.txt" }];
  body.asm = { group_id: 1 };
  body.mail_settings = {};
  body.tracking_settings = {};
  return body;
}

/** Set `path` (dotted, numeric segments index arrays) to `value`, creating objects on the way. */
function setPath(body: Body, path: string, value: unknown): void {
  const segments = path.split(".");
  let node: Body = body;
  for (const segment of segments.slice(0, -1)) {
    node[segment] ??= {};
    node = node[segment];
  }
  node[segments.at(-1)!] = value;
}

describe("validateMailSend: null is SendGrid's type error wherever a field has a type", () => {
  const cases: [path: string, expected: string][] = [
    ["reply_to", "object"],
    ["reply_to.name", "string"],
    ["reply_to_list", "array"],
    ["subject", "string"],
    ["content", "array"],
    ["attachments", "array"],
    ["attachments.0.type", "string"],
    ["attachments.0.disposition", "string"],
    ["attachments.0.content_id", "string"],
    ["template_id", "string"],
    ["sections", "object"],
    ["headers", "object"],
    ["categories", "array"],
    ["custom_args", "object"],
    ["send_at", "integer"],
    ["batch_id", "string"],
    ["asm", "object"],
    ["asm.groups_to_display", "array"],
    ["ip_pool_name", "string"],
    ["mail_settings", "object"],
    ["mail_settings.bypass_list_management", "object"],
    ["mail_settings.sandbox_mode", "object"],
    ["mail_settings.sandbox_mode.enable", "boolean"],
    ["mail_settings.footer.text", "string"],
    ["mail_settings.bcc.email", "string"],
    ["mail_settings.spam_check.threshold", "integer"],
    ["tracking_settings", "object"],
    ["tracking_settings.click_tracking.enable_text", "boolean"],
    ["tracking_settings.open_tracking.substitution_tag", "string"],
    ["tracking_settings.ganalytics.utm_source", "string"],
    ["from.name", "string"],
    ["personalizations.0.to.0.name", "string"],
    ["personalizations.0.cc", "array"],
    ["personalizations.0.bcc", "array"],
    ["personalizations.0.from", "object"],
    ["personalizations.0.subject", "string"],
    ["personalizations.0.headers", "object"],
    ["personalizations.0.substitutions", "object"],
    ["personalizations.0.dynamic_template_data", "object"],
    ["personalizations.0.custom_args", "object"],
    ["personalizations.0.send_at", "integer"],
  ];
  it.each(cases)("%s: null → Expected: %s, given: null", (path, expected) => {
    const body = fullBody();
    setPath(body, path, null);
    expect(errorsOf(body)).toEqual([
      {
        message: nullType(expected),
        field: path,
        help: helpUrl(path.split(".").map((x) => (/^\d+$/.test(x) ? Number(x) : x))),
      },
    ]);
  });

  it("the live bodies of github.com/alexgaribay/sendgrid_elixir/issues/17, all at once", () => {
    const body = { ...base(), attachments: null, content: null, send_at: null, reply_to: null };
    const live = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.";
    const ours = (e: SendGridFieldError) => ({ ...e, help: e.help!.replace(`${MAIL_SEND_DOCS_URL}#`, live) });
    expect(errorsOf(body).map(ours)).toEqual([
      { field: "reply_to", help: `${live}reply-to`, message: "Invalid type. Expected: object, given: null." },
      { field: "content", help: `${live}content`, message: "Invalid type. Expected: array, given: null." },
      {
        field: "attachments",
        help: `${live}attachments`,
        message: "Invalid type. Expected: array, given: null.",
      },
      { field: "send_at", help: `${live}send-at`, message: "Invalid type. Expected: integer, given: null." },
    ]);
  });
});

describe("validateMailSend: unknown keys are refused, one error per key at its own path", () => {
  const cases: [object: string, key: string, anchor: string][] = [
    ["", "ip_warmup", "fields"],
    ["", "templateId", "fields"],
    ["personalizations.0", "dynamicTemplateData", "personalizations"],
    ["personalizations.0.to.0", "extra", "personalizations.to"],
    ["from", "address", "from"],
    ["reply_to", "extra", "reply-to"],
    ["content.0", "charset", "content"],
    ["attachments.0", "name", "attachments"], // sendgrid-go's old Attachment.Name
    ["asm", "groupId", "asm"],
    ["mail_settings", "sandboxMode", "mail-settings"],
    ["mail_settings.sandbox_mode", "forward_spam", "mail-settings.sandbox-mode"],
    ["mail_settings.spam_check", "url", "mail-settings.spam-check"],
    ["tracking_settings", "bcc", "tracking-settings"],
    ["tracking_settings.ganalytics", "utm_id", "tracking-settings.ganalytics"],
  ];
  it.each(cases)("%s: %s", (object, key, anchor) => {
    const body = fullBody();
    setPath(body, object === "" ? key : `${object}.${key}`, "x");
    const field = object === "" ? key : `${object}.${key}`;
    expect(errorsOf(body)).toEqual([err(field, MESSAGES.unknownField(key), anchor)]);
  });

  it("in reply_to_list entries", () => {
    const body = {
      ...base(),
      reply_to_list: [{ email: "a@example.com" }, { email: "b@example.com", id: 2 }],
    };
    expect(errorsOf(body)).toEqual([err("reply_to_list.1.id", MESSAGES.unknownField("id"), "reply-to-list")]);
  });

  it("reports ten keys of one object, then how many more", () => {
    const body = base();
    for (let i = 0; i < 13; i++) body[`k${i}`] = i;
    const errors = errorsOf(body);
    expect(errors).toHaveLength(11);
    expect(errors.slice(0, 10).map((e) => e.field)).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`));
    expect(errors[10]).toEqual({
      message: "…and 3 more unknown fields in this object.",
      field: null,
      help: `${MAIL_SEND_DOCS_URL}#fields`,
    });
  });

  it("echoes a long key at most 1,000 characters", () => {
    const body = base();
    body["k".repeat(5000)] = 1;
    const [e] = errorsOf(body);
    expect(e!.message).toBe(MESSAGES.unknownField(`${"k".repeat(1000)}…`));
    expect(e!.field).toBe("k".repeat(5000));
  });

  it("comes with every other error of the request", () => {
    const body = { ...base(), subject: null, extra: true };
    p0(body).to[0].email = "bad";
    p0(body).toName = "x";
    expect(errorsOf(body)).toEqual([
      err("personalizations.0.to.0.email", MESSAGES.recipientInvalid, "personalizations.to.email"),
      err("personalizations.0.toName", MESSAGES.unknownField("toName"), "personalizations"),
      err("subject", nullType("string"), "subject"),
      err("extra", MESSAGES.unknownField("extra"), "fields"),
    ]);
  });
});

describe("validateMailSend: several errors in one response", () => {
  it("reports field and cross-field errors together, field errors first, in body order", () => {
    const body = {
      personalizations: [
        { to: [{ email: "bad" }, { email: "dup@example.com" }], cc: [{ email: "dup@example.com" }] },
      ],
      from: { email: "nope" },
      content: [{ type: "text/plain", value: "" }],
      send_at: NOW + H72 + 1,
    };
    expect(errorsOf(body)).toEqual([
      err("personalizations.0.to.0.email", MESSAGES.recipientInvalid, "personalizations.to.email"),
      err("from.email", MESSAGES.fromInvalid, "from.email"),
      err("content.0.value", MESSAGES.contentValueInvalid, "content.value"),
      err("subject", MESSAGES.subjectRequired, "subject"),
      err(
        "personalizations.0",
        MESSAGES.duplicateRecipient("dup@example.com", "personalizations.0.cc"),
        "personalizations",
      ),
      err("send_at", MESSAGES.sendAtTooFar, "send-at"),
    ]);
  });

  it("reports one error per field even when several rules fail on it", () => {
    // Too long *and* not a valid address: only the first (length) is reported.
    const body = { ...base(), from: { email: `${"x".repeat(330)}` } };
    expect(errorsOf(body)).toEqual([err("from.email", MESSAGES.emailTooLong("From"), "from.email")]);
  });
});

describe("helpUrl", () => {
  it.each([
    [["template_id"], "template-id"],
    [["personalizations", 1, "to", 0, "email"], "personalizations.to.email"],
    [["personalizations", 0, "headers", "X_Under"], "personalizations.headers"],
    [["custom_args", "a.b"], "custom-args"],
  ] as const)("%j → #%s", (path, anchor) => {
    expect(helpUrl(path)).toBe(`${MAIL_SEND_DOCS_URL}#${anchor}`);
  });

  it("uses ScaiSend's docs base", () => {
    expect(MAIL_SEND_DOCS_URL).toBe("https://scaisend.scailabs.ai/docs/06-reference/02-mail-send");
  });
});

describe("isBase64", () => {
  it.each([
    ["dGVzdA==", true],
    ["dGVzdA", true], // unpadded
    ["dGVz\r\ndA==", true], // RFC 2045 line-wrapped
    ["NOT BASE64", false],
    ["NOT_BASE64", false],
    ["dGVzd", false], // length ≡ 1 (mod 4) can never decode
    ["dG=VzdA=", false],
    ["", false],
  ])("%j → %s", (input, expected) => {
    expect(isBase64(input)).toBe(expected);
  });
});

/**
 * Bodies as the official Node client builds them (github.com/sendgrid/sendgrid-nodejs): we run @sendgrid/mail's own
 * `send()` against a fake HTTP client and validate exactly what it would have POSTed.
 */
async function officialClientBody(data: Record<string, unknown>, isMultiple = false): Promise<Body> {
  const service = new MailService();
  let captured: unknown;
  const fakeClient = {
    request: async (req: { body: unknown }) => {
      captured = req.body;
      return [{ statusCode: 202, body: "", headers: {} }, ""];
    },
  };
  service.setClient(fakeClient as unknown as Parameters<MailService["setClient"]>[0]);
  await service.send(data as unknown as Parameters<MailService["send"]>[0], isMultiple);
  return JSON.parse(JSON.stringify(captured)) as Body;
}

describe("validateMailSend: bodies produced by @sendgrid/mail 8.1.6", () => {
  it("text + html, custom args, headers, categories with an empty one", async () => {
    const body = await officialClientBody({
      to: "to@example.com",
      from: { email: "from@example.com", name: "From" },
      subject: "Hi",
      text: "plain",
      html: "<p>html</p>",
      customArgs: { orderId: "42", user_id: "7" },
      headers: { "X-Custom-Header": "v" },
      categories: ["welcome", ""],
      sendAt: NOW + 60,
    });
    // The client's quirks, pinned so a client upgrade that changes them is noticed.
    expect(body.content.map((c: { type: string }) => c.type)).toEqual(["text/plain", "text/html"]);
    expect(body.custom_args).toEqual({ orderId: "42", user_id: "7" }); // children not snake_cased
    expect(body.headers).toEqual({ "X-Custom-Header": "v" });
    expect(body.categories).toEqual(["welcome"]); // '' removed
    const r = validateMailSend(body, NOW_MS);
    expect(r.ok ? [] : r.errors).toEqual([]);
  });

  it("a dynamic template send (no subject, no content)", async () => {
    const body = await officialClientBody({
      to: [{ email: "a@example.com", name: "A" }],
      from: "from@example.com",
      templateId: "d-0123456789abcdef0123456789abcdef",
      dynamicTemplateData: { firstName: "Ann", order: { total: 10 } },
    });
    expect(body.personalizations[0].dynamic_template_data).toEqual({
      firstName: "Ann",
      order: { total: 10 },
    });
    expect(errorsOf(body)).toEqual([]);
  });

  it("sendMultiple: one personalization per recipient", async () => {
    const body = await officialClientBody(
      { to: ["a@example.com", "b@example.com"], from: "from@example.com", subject: "S", text: "t" },
      true,
    );
    expect(body.personalizations).toHaveLength(2);
    expect(errorsOf(body)).toEqual([]);
  });

  /** Every null anywhere in a JSON value, by dotted path. */
  const nullsIn = (v: unknown, path = ""): string[] =>
    v === null
      ? [path]
      : typeof v === "object"
        ? Object.entries(v as object).flatMap(([k, x]) => nullsIn(x, path ? `${path}.${k}` : k))
        : [];

  // Every setter of @sendgrid/helpers' Mail, Personalization and Attachment with the values they take:
  // what the helpers emit carries no unknown key and no null of their own, so strictness costs
  // their users nothing.
  const UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
  const helperInputs: [name: string, data: Record<string, unknown>, isMultiple?: boolean][] = [
    [
      "every top-level setter",
      {
        to: [{ email: "a@example.com", name: "A" }, "B <b@example.com>"],
        cc: "c@example.com",
        bcc: ["d@example.com"],
        from: "Sender <from@example.com>",
        replyTo: "r@example.com",
        subject: "S",
        text: "t",
        html: "<p>h</p>",
        attachments: [
          new Attachment({
            content: "aGk=",
            filename: "a.txt",
            type: "text/plain",
            disposition: "attachment",
          }),
          {
            content: "aGk=",
            filename: "logo.png",
            type: "image/png",
            disposition: "inline",
            contentId: "logo",
          },
        ],
        categories: ["a", "b", ""],
        headers: { "X-A": "1" },
        customArgs: { k: "v" },
        sections: { ":s": "x" },
        substitutions: { name: "Ann" },
        substitutionWrappers: ["-", "-"],
        sendAt: NOW + 60,
        batchId: "b1",
        ipPoolName: "pool",
        asm: { groupId: 1, groupsToDisplay: [1, 2] },
        mailSettings: {
          bcc: { enable: false, email: "x@example.com" },
          bypassListManagement: { enable: false },
          bypassSpamManagement: { enable: true },
          bypassBounceManagement: { enable: true },
          bypassUnsubscribeManagement: { enable: true },
          footer: { enable: false, text: "t", html: "h" },
          sandboxMode: { enable: true },
          spamCheck: { enable: false, threshold: 5, postToUrl: "https://example.com/spam" },
        },
        trackingSettings: {
          clickTracking: { enable: false, enableText: false },
          openTracking: { enable: false, substitutionTag: "%open%" },
          subscriptionTracking: { enable: false, text: "t", html: "h", substitutionTag: "%unsub%" },
          ganalytics: {
            enable: false,
            utm_source: "s",
            utm_medium: "m",
            utm_term: "t",
            utm_content: "c",
            utm_campaign: "n",
          },
        },
        hideWarnings: true,
      },
    ],
    [
      "explicit personalizations with every member, a legacy template and reply_to_list",
      {
        from: { email: "from@example.com" },
        templateId: UUID,
        content: [{ type: "text/plain", value: "<%body%>" }],
        replyToList: [{ email: "r1@example.com", name: "R1" }, { email: "r2@example.com" }],
        personalizations: [
          {
            to: "a@example.com",
            cc: [{ email: "c@example.com" }],
            bcc: "d@example.com",
            from: "Other <other@example.com>",
            subject: "P0",
            headers: { "X-P": "0" },
            customArgs: { p: "0" },
            substitutions: { who: "A" },
            sendAt: NOW + 120,
          },
          { to: [{ email: "b@example.com" }], subject: "P1" },
        ],
        substitutions: { global: "G" },
      },
    ],
    [
      "a dynamic template with global and per-personalization data",
      {
        from: "from@example.com",
        templateId: "d-0123456789abcdef0123456789abcdef",
        dynamicTemplateData: { shop: { name: "S" } },
        personalizations: [
          { to: "a@example.com", dynamicTemplateData: { first: "A", items: [{ n: 1 }] } },
          { to: "b@example.com" },
        ],
      },
    ],
    [
      "sendMultiple with cc and bcc",
      {
        to: ["a@example.com", "b@example.com"],
        cc: "c@example.com",
        from: "f@example.com",
        subject: "S",
        html: "h",
      },
      true,
    ],
  ];
  it.each(helperInputs)("%s: accepted, with no null in it", async (_name, data, isMultiple) => {
    const body = await officialClientBody(data, isMultiple ?? false);
    expect(nullsIn(body)).toEqual([]);
    expect(errorsOf(body)).toEqual([]);
  });

  it("a plain attachment with the client's own contentId (AttachmentData) is sent camelCase and read as content_id", async () => {
    const body = await officialClientBody({
      to: "a@example.com",
      from: "f@example.com",
      subject: "S",
      html: '<img src="cid:logo">',
      attachments: [
        {
          content: "aGk=",
          filename: "logo.png",
          type: "image/png",
          disposition: "inline",
          contentId: "logo",
        },
      ],
    });
    expect(body.attachments[0]).toHaveProperty("contentId", "logo"); // the client's quirk, pinned
    const r = validateMailSend(body, NOW_MS);
    expect(r.ok ? [] : r.errors).toEqual([]);
    expect(r.ok && r.value.attachments![0]).toEqual({
      content: "aGk=",
      filename: "logo.png",
      type: "image/png",
      disposition: "inline",
      content_id: "logo",
    });
  });

  it("contentId beside content_id is an unknown key; an inline attachment with neither needs one", () => {
    const att = { content: "aGk=", filename: "a.png", disposition: "inline" };
    expect(errorsOf({ ...base(), attachments: [{ ...att, content_id: "a", contentId: "b" }] })).toEqual([
      err("attachments.0.contentId", MESSAGES.unknownField("contentId"), "attachments"),
    ]);
    expect(errorsOf({ ...base(), attachments: [{ ...att, contentId: "" }] })).toEqual([
      err("attachments.0.content_id", MESSAGES.attachmentContentIdRequired, "attachments.content-id"),
    ]);
  });

  it("a null the application hands the helpers passes through them and is refused, as SendGrid refuses it", async () => {
    const body = await officialClientBody({
      to: "a@example.com",
      from: "f@example.com",
      subject: "S",
      text: "t",
      attachments: [{ content: "aGk=", filename: "a.txt", type: null }],
    });
    expect(body.attachments[0].type).toBeNull();
    expect(errorsOf(body)).toEqual([err("attachments.0.type", nullType("string"), "attachments.type")]);
  });

  it("a bad address still gets our error, not a crash", async () => {
    const body = await officialClientBody({
      to: "not-an-email",
      from: "from@example.com",
      subject: "S",
      text: "t",
    });
    expect(errorsOf(body)).toEqual([
      err("personalizations.0.to.0.email", MESSAGES.recipientInvalid, "personalizations.to.email"),
    ]);
  });
});

// Issue 6: one reserved-header list, size limits per field, fields refused until they are built.

describe("validateMailSend: reserved headers come from shared/mail/headers.ts", () => {
  it("includes the headers the origin writes itself", () => {
    for (const name of ["date", "message-id", "mime-version", "sender", "return-path"]) {
      expect(RESERVED_HEADER_NAMES).toContain(name);
    }
  });

  it.each(RESERVED_HEADER_NAMES)("refuses %s at both levels, in any letter case", (name) => {
    const upper = name.toUpperCase();
    const body = { ...base(), headers: { [name]: "x" } };
    p0(body).headers = { [upper]: "x" };
    expect(errorsOf(body)).toEqual([
      err(`personalizations.0.headers.${upper}`, MESSAGES.headerReserved, "personalizations.headers"),
      err(`headers.${name}`, MESSAGES.headerReserved, "headers"),
    ]);
  });
});

describe("validateMailSend: size limits", () => {
  const kanji = (bytes: number) => "日".repeat(Math.floor(bytes / 3)); // 3 bytes each in UTF-8

  it("accepts every limit exactly", () => {
    const body = {
      ...base(),
      subject: "s".repeat(MAX_SUBJECT_BYTES),
      from: { email: "from@example.com", name: "n".repeat(MAX_NAME_BYTES) },
      headers: { ["X-" + "n".repeat(MAX_HEADER_NAME_LENGTH - 2)]: "v".repeat(MAX_HEADER_VALUE_BYTES) },
      content: [{ type: `text/${"x".repeat(MAX_CONTENT_TYPE_LENGTH - 5)}`, value: "x" }],
      sections: { s: "x".repeat(MAX_SECTIONS_BYTES - '{"s":""}'.length) },
    };
    p0(body).to[0].name = kanji(MAX_NAME_BYTES);
    p0(body).subject = kanji(MAX_SUBJECT_BYTES);
    expect(errorsOf(body)).toEqual([]);
  });

  runCases([
    [
      "subject one byte over (multi-byte text counts in UTF-8 bytes)",
      (b) => (b.subject = `${kanji(MAX_SUBJECT_BYTES - 1)}é`),
      "subject",
      MESSAGES.subjectTooLong,
      "subject",
    ],
    [
      "a personalization subject over",
      (b) => (p0(b).subject = "s".repeat(MAX_SUBJECT_BYTES + 1)),
      "personalizations.0.subject",
      MESSAGES.subjectTooLong,
      "personalizations.subject",
    ],
    [
      "a from name over",
      (b) => (b.from.name = "n".repeat(MAX_NAME_BYTES + 1)),
      "from.name",
      MESSAGES.nameTooLong("from"),
      "from.name",
    ],
    [
      "a to name over, counted in bytes",
      (b) => (p0(b).to[0].name = `${kanji(MAX_NAME_BYTES - 1)}é`),
      "personalizations.0.to.0.name",
      MESSAGES.nameTooLong("to"),
      "personalizations.to.name",
    ],
    [
      "a reply_to_list name over",
      (b) => (b.reply_to_list = [{ email: "r@example.com", name: "n".repeat(MAX_NAME_BYTES + 1) }]),
      "reply_to_list.0.name",
      MESSAGES.nameTooLong("reply_to_list"),
      "reply-to-list.name",
    ],
    [
      "a header name over",
      (b) => (b.headers = { ["X-" + "n".repeat(MAX_HEADER_NAME_LENGTH - 1)]: "v" }),
      `headers.X-${"n".repeat(MAX_HEADER_NAME_LENGTH - 1)}`,
      MESSAGES.headerNameTooLong,
      "headers",
    ],
    [
      "a header value over",
      (b) => (p0(b).headers = { "X-Big": `${kanji(MAX_HEADER_VALUE_BYTES - 1)}é` }),
      "personalizations.0.headers.X-Big",
      MESSAGES.headerValueTooLong("X-Big"),
      "personalizations.headers",
    ],
    [
      "headers over in total while each is within",
      (b) =>
        (b.headers = Object.fromEntries(
          Array.from({ length: 5 }, (_, i) => [`X-${i}`, "v".repeat(MAX_HEADER_VALUE_BYTES - 10)]),
        )),
      "headers",
      MESSAGES.headersTooLarge,
      "headers",
    ],
    [
      "a content type over",
      (b) => (b.content = [{ type: `text/${"x".repeat(MAX_CONTENT_TYPE_LENGTH)}`, value: "x" }]),
      "content.0.type",
      MESSAGES.contentTypeTooLong,
      "content.type",
    ],
    [
      "sections over",
      (b) => (b.sections = { s: "x".repeat(MAX_SECTIONS_BYTES) }),
      "sections",
      MESSAGES.sectionsSize,
      "sections",
    ],
  ]);

  it("reports a CR/LF before the size of the same header (injection first)", () => {
    const body = {
      ...base(),
      headers: { "X-A": `${"v".repeat(MAX_HEADER_VALUE_BYTES)}\r\nBcc: x@example.com` },
    };
    expect(errorsOf(body)).toEqual([err("headers.X-A", MESSAGES.headerCrlf("X-A"), "headers")]);
  });

  it("a deeply nested value where a string belongs is echoed by its type: JSON.stringify would overflow", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 300_000; i++) deep = [deep];
    const body = { ...base(), content: undefined, template_id: deep };
    expect(() => validateMailSend(body, NOW_MS)).not.toThrow();
    expect(errorsOf(body)).toEqual([err("template_id", MESSAGES.templateIdType("array"), "template-id")]);
  });

  it("echoes at most 1,000 characters of a bad value", () => {
    const body = { ...base(), categories: ["c".repeat(5000)] };
    const [e] = errorsOf(body);
    expect(e?.message).toBe(MESSAGES.categoryTooLong(`${"c".repeat(1000)}…`));
  });

  it("utf8ByteLength counts like TextEncoder, lone surrogates included", () => {
    for (const s of ["", "abc", "é", "日本", "😀", "a\ud800b", "\udc00", "x\ud83d", "😀\ud83d\ude00é"]) {
      expect(utf8ByteLength(s)).toBe(new TextEncoder().encode(s).length);
    }
  });
});

describe("notSupportedErrors: fields this deployment does not honour yet", () => {
  const parsed = (body: Body): MailSend => {
    const r = validateMailSend(body, NOW_MS);
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    return r.value;
  };
  const fields = (body: Body) => notSupportedErrors(parsed(body), NOW_MS).map((e) => e.field);

  it("nothing for a body that uses only honoured fields", () => {
    const body = {
      ...base(),
      reply_to: { email: "r@example.com" },
      headers: { "X-A": "1" },
      categories: ["a"],
      custom_args: { k: "v" },
      sections: { "-s-": "section" },
      mail_settings: { sandbox_mode: { enable: true }, bypass_spam_management: { enable: true } },
    };
    p0(body).substitutions = { "-n-": "-s-" };
    p0(body).from = { email: "other@example.com" };
    expect(notSupportedErrors(parsed(body), NOW_MS)).toEqual([]);
  });

  it("send_at (now or later, at both levels) and batch_id are honoured, so not refused", () => {
    expect(fields({ ...base(), send_at: NOW })).toEqual([]);
    const body = { ...base(), send_at: NOW + 1, batch_id: "HkJ5yLYULb7Rj8GKSx7u025ouWVlMgAi" };
    p0(body).send_at = NOW + 3600;
    expect(fields(body)).toEqual([]);
  });

  it("lists every unbuilt field, in body order", () => {
    const body = {
      ...base(),
      attachments: [{ content: "dGVzdA==", filename: "a.txt" }],
      send_at: NOW + 60,
      batch_id: "b",
      asm: { group_id: 1 },
      ip_pool_name: "pool",
      mail_settings: { footer: { enable: true }, bcc: { enable: false }, spam_check: { enable: true } },
      tracking_settings: { click_tracking: { enable: true }, ganalytics: { enable: false } },
    };
    p0(body).dynamic_template_data = { a: 1 };
    expect(fields(body)).toEqual([
      "personalizations.0.dynamic_template_data",
      // attachments, send_at, batch_id and asm are honoured, so not listed
      // mail_settings.footer and tracking_settings are honoured (docs/api/tracking.md)
      "mail_settings.spam_check",
    ]);
    // Other content types are built (content-types.ts); one that cannot be a MIME part is refused.
    const other = {
      ...base(),
      content: [
        { type: "text/plain", value: "x" },
        { type: "text/calendar", value: "V" },
        { type: "multipart/related", value: "V" },
      ],
    };
    expect(fields(other)).toEqual(["content.2.type"]);
  });

  it("accepts asm: the send path checks its groups (edge/src/services/suppression-policy.ts)", () => {
    const body = { ...base(), asm: { group_id: 1, groups_to_display: [1] } };
    expect(notSupportedErrors(parsed(body), NOW_MS)).toEqual([]);
  });
});
