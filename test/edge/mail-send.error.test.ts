/**
 * POST /v3/mail/send failures through the real route: status codes and exact SendGrid-style bodies
 * (`{"errors":[{message, field, help}]}`, docs/api/sendgrid.md#errors).
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { bearer, call, mailBody, sendMail, setupTenant, type TenantFixture } from "./helpers.ts";

const HELP = "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send";

let t: TenantFixture;
beforeAll(async () => {
  t = await setupTenant();
});

async function messageCount(tenantId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM messages WHERE tenant_id = ?")
    .bind(tenantId)
    .first<{ n: number }>();
  return row!.n;
}

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

  it("answers a message body too big to travel inline with 413", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, { content: [{ type: "text/plain", value: "a".repeat(700 * 1024 + 1) }] }),
    );
    await expectErrors(res, 413, [
      {
        message: `The message content of personalization 0 is ${700 * 1024 + 1} bytes; this deployment accepts at most ${700 * 1024} bytes of text and HTML per message.`,
        field: "content",
        help: null,
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

  it("rejects a content type other than text/plain and text/html", async () => {
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        content: [
          { type: "text/plain", value: "plain" },
          { type: "text/calendar", value: "BEGIN:VCALENDAR" },
        ],
      }),
    );
    await expectErrors(res, 400, [
      {
        message: "Content of type text/calendar is not supported yet; send text/plain and text/html.",
        field: "content",
        help: null,
      },
    ]);
  });

  it("rejects an unsupported content type in sandbox mode too (same validation as live)", async () => {
    const res = await sendMail(
      t.testKey,
      mailBody(t.from, {
        content: [
          { type: "text/plain", value: "plain" },
          { type: "application/json", value: "{}" },
        ],
      }),
    );
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: { field: string }[] }).errors[0]!.field).toBe("content");
  });
});
