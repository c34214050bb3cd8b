/**
 * Drop-in compatibility with SendGrid's official Node clients, end to end: @sendgrid/mail 8.1.6 and
 * @sendgrid/client 8.1.6 from npm, pointed at the local edge (wrangler dev) with nothing changed
 * but the base URL and key → hub → origin over the link → the loopback MX. At the sink: the headers,
 * the MIME tree (docs/api/sendgrid.md#attachments), attachment bytes, and DKIM passing mailauth.
 *
 * What the other e2e files already prove through the same clients is not repeated here: a plain
 * text + html send with DKIM and a single-field 400 (spine.e2e.test.ts), a dynamic template
 * rendered per personalization and a deleted template's 400 (templates.e2e.test.ts), a 20 MB body
 * with 10 attachments (attachments.e2e.test.ts). This file adds several personalizations with
 * their own subject, headers and custom_args, categories, reply_to_list, attachments and inline
 * images as the helpers build them (an Attachment and a plain object with the helpers' camelCase
 * `contentId`), a dynamic template with an attachment and an inline image sent as a raw body
 * through @sendgrid/client, and the strict validation errors (several at once) as each client's
 * ResponseError. send_at and batches: their own e2e tests.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { simpleParser } from "mailparser";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const require = createRequire(import.meta.url);
type ClientResponse = { statusCode: number; headers: Record<string, string>; body: any };
// Both packages export singletons; build one client per API key from their classes.
const MailService = require("@sendgrid/mail/src/classes/mail-service.js") as new () => {
  setApiKey(key: string): void;
  client: { setDefaultRequest(k: string, v: string): void };
  send(data: object, isMultiple?: boolean): Promise<[ClientResponse, unknown]>;
};
const Client = require("@sendgrid/client/src/classes/client.js") as new () => {
  setApiKey(key: string): void;
  setDefaultRequest(k: string, v: string): void;
  request(req: { method: string; url: string; body?: unknown }): Promise<[ClientResponse, unknown]>;
};
const { Attachment, ResponseError } = require("@sendgrid/helpers").classes as {
  Attachment: new (data: object) => object;
  ResponseError: new (...args: never[]) => Error & { code: number; response: { body: any } };
};

// setApiKey resets baseUrl to SendGrid's host, so the override must come after it.
function mailClient(apiKey: string) {
  const mail = new MailService();
  mail.setApiKey(apiKey);
  mail.client.setDefaultRequest("baseUrl", `${stack.edge.url}/`);
  return mail;
}
function httpClient(apiKey: string) {
  const client = new Client();
  client.setApiKey(apiKey);
  client.setDefaultRequest("baseUrl", `${stack.edge.url}/`);
  return client;
}

/** The client's rejection, or a failure if it resolved. */
async function rejection(p: Promise<unknown>): Promise<InstanceType<typeof ResponseError>> {
  const outcome = await p.then(
    (r) => ({ resolved: r }),
    (e: unknown) => ({ rejected: e }),
  );
  if (!("rejected" in outcome)) throw new Error(`expected a ResponseError, got ${JSON.stringify(outcome)}`);
  expect(outcome.rejected).toBeInstanceOf(ResponseError);
  return outcome.rejected as InstanceType<typeof ResponseError>;
}

const HELP = "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send";
const from = { email: `app@${SENDER_DOMAIN}`, name: "Compat App" };
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
/** A real 1×1 PNG, so the inline image is one a client can show. */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "base64",
);
const PDF = Buffer.from("%PDF-1.4\n% compat test\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n");

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
});

afterAll(async () => {
  await stack?.stop();
});

/** Waits for every id to be delivered, then returns each recipient's raw message from the sink. */
async function deliveredRaw(ids: string[]): Promise<Map<string, Buffer>> {
  const finals = await Promise.all(
    ids.map((id) => stack.waitForStatus(id, ["delivered", "bounced", "failed"], 60_000)),
  );
  for (const m of finals) expect(m.status, m.error_message).toBe("delivered");
  const raw = new Map<string, Buffer>();
  for (const m of stack.smtp.messages) {
    const id = /^Message-ID:\s*(<[^>\r\n]+>)/im.exec(m.raw.toString("latin1"))?.[1];
    if (finals.some((f) => f.message_id_header === id)) for (const r of m.rcptTo) raw.set(r, m.raw);
  }
  return raw;
}

async function expectDkimPass(raw: Buffer) {
  const dkim = await dkimVerify(raw, { resolver: mailauthResolver(stack.dns.server) });
  expect(dkim.results.map((r) => [r.status.result, r.signingDomain])).toEqual([["pass", SENDER_DOMAIN]]);
}

const headOf = (raw: Buffer) => raw.subarray(0, raw.indexOf("\r\n\r\n")).toString("latin1");

describe("@sendgrid/mail against the stack", () => {
  it("several personalizations with their own subject, headers and custom_args; categories and reply_to_list", async () => {
    const [res] = await mailClient(stack.liveKey.api_key).send({
      from,
      subject: "Default subject",
      text: "plain part",
      html: "<p>html <b>part</b></p>",
      headers: { "X-Campaign": "spring", "X-Shared": "top" },
      customArgs: { campaign: "c-1", tier: "top" },
      categories: ["compat", "receipts"],
      replyToList: [{ email: "support@inbox.test", name: "Support" }, { email: "sales@inbox.test" }],
      personalizations: [
        {
          to: [{ email: "ann@inbox.test", name: "Ann" }],
          cc: "ann.cc@inbox.test",
          bcc: "ann.bcc@inbox.test",
          subject: "For Ann",
          headers: { "X-Shared": "ann", "X-Only-Ann": "1" },
          customArgs: { tier: "gold", user: "ann" },
        },
        { to: "bob@inbox.test", customArgs: { user: "bob" } },
      ],
    });
    expect(res.statusCode).toBe(202);
    const ids = (res.body as { message_ids: string[] }).message_ids;
    expect(ids).toHaveLength(2);
    expect(res.headers["x-message-id"]).toBe(ids[0]);

    const raw = await deliveredRaw(ids);
    // Ann's message goes to to, cc and bcc (one envelope); Bcc never shows in the headers.
    expect([...raw.keys()].sort()).toEqual([
      "ann.bcc@inbox.test",
      "ann.cc@inbox.test",
      "ann@inbox.test",
      "bob@inbox.test",
    ]);
    const ann = await simpleParser(raw.get("ann@inbox.test")!);
    const bob = await simpleParser(raw.get("bob@inbox.test")!);
    expect(ann.subject).toBe("For Ann");
    expect(bob.subject).toBe("Default subject");
    const addresses = (a: typeof ann.to) => (Array.isArray(a) ? a : a ? [a] : []).flatMap((x) => x.value);
    expect(addresses(ann.to)).toEqual([{ address: "ann@inbox.test", name: "Ann" }]);
    expect(addresses(ann.cc)).toEqual([{ address: "ann.cc@inbox.test", name: "" }]);
    expect(headOf(raw.get("ann@inbox.test")!)).not.toMatch(/^bcc:/im);
    expect(ann.replyTo?.value.map((a) => a.address)).toEqual(["support@inbox.test", "sales@inbox.test"]);
    expect(ann.replyTo?.value[0]?.name).toBe("Support");
    // Headers merge, the personalization's value winning.
    expect([
      ann.headers.get("x-campaign"),
      ann.headers.get("x-shared"),
      ann.headers.get("x-only-ann"),
    ]).toEqual(["spring", "ann", "1"]);
    expect([bob.headers.get("x-shared"), bob.headers.has("x-only-ann")]).toEqual(["top", false]);
    // text/plain, then text/html, in multipart/alternative.
    expect(headOf(raw.get("bob@inbox.test")!)).toMatch(/^Content-Type: multipart\/alternative;/im);
    expect(ann.text?.trim()).toBe("plain part");
    // Open tracking is on by default (docs/api/tracking.md#tenant-defaults): the pixel follows the HTML.
    expect(ann.html).toMatch(
      /^<p>html <b>part<\/b><\/p><img src="[^"]+\/t\/o\/[\w.-]+\.gif" width="1" height="1" alt=""[^>]*\/>$/,
    );
    await expectDkimPass(raw.get("ann@inbox.test")!);
    await expectDkimPass(raw.get("bob@inbox.test")!);

    // custom_args merged per personalization, categories kept (docs/api/sendgrid.md#fields).
    const [a, b] = await Promise.all(
      ids.map((id) => stack.api("GET", `/v3/messages/${id}`, stack.liveKey.api_key)),
    );
    expect(a!.body.custom_args).toEqual({ campaign: "c-1", tier: "gold", user: "ann" });
    expect(b!.body.custom_args).toEqual({ campaign: "c-1", tier: "top", user: "bob" });
    expect(a!.body.categories).toEqual(["compat", "receipts"]);
  });

  it("attachments as the helpers build them: an Attachment, and an inline image with the client's own contentId", async () => {
    const [res] = await mailClient(stack.liveKey.api_key).send({
      to: "att@inbox.test",
      from,
      subject: "With attachments",
      text: "see the logo",
      html: '<p>logo: <img src="cid:logo@compat"></p>',
      attachments: [
        new Attachment({ content: PDF.toString("base64"), filename: "report.pdf", type: "application/pdf" }),
        // Plain object, typed as @sendgrid/mail's AttachmentData: the client sends `contentId` as given.
        {
          content: PNG.toString("base64"),
          filename: "logo.png",
          type: "image/png",
          disposition: "inline",
          contentId: "logo@compat",
        },
      ],
    });
    expect(res.statusCode).toBe(202);
    const raw = (await deliveredRaw([res.headers["x-message-id"]!])).get("att@inbox.test")!;
    const mail = await simpleParser(raw, { skipImageLinks: true });
    // In MIME order: the inline image sits in multipart/related, before the attachment after it.
    expect(mail.attachments.map((a) => [a.filename, a.contentType, sha(a.content)])).toEqual([
      ["logo.png", "image/png", sha(PNG)],
      ["report.pdf", "application/pdf", sha(PDF)],
    ]);
    expect(mail.attachments[0]).toMatchObject({
      cid: "logo@compat",
      contentDisposition: "inline",
      related: true,
    });
    expect(mail.attachments[1]).toMatchObject({ contentDisposition: "attachment" });
    expect(mail.attachments[1]!.related).not.toBe(true);
    // multipart/mixed ⊃ multipart/alternative (text, multipart/related ⊃ html + the inline image) ⊃ the PDF.
    expect(headOf(raw)).toMatch(/^Content-Type: multipart\/mixed;/m);
    const text = raw.toString("latin1");
    expect(text).toMatch(/Content-Type: multipart\/alternative;/);
    expect(text).toMatch(/Content-Type: multipart\/related; type="text\/html";/);
    expect(text).toMatch(/^Content-ID: <logo@compat>/m);
    await expectDkimPass(raw);
  });

  it("a 400 is the client's ResponseError with every error at once, dotted zero-indexed paths", async () => {
    const err = await rejection(
      mailClient(stack.liveKey.api_key).send({
        from,
        subject: "Bad",
        text: "x",
        personalizations: [{ to: "ok@inbox.test" }, { to: "not-an-address" }],
        // A null the application wrote passes through the helpers; SendGrid refuses it, so does ScaiSend.
        attachments: [{ content: "aGk=", filename: "a.txt", type: null }],
        categories: ["dup", "dup"],
      }),
    );
    expect(err.code).toBe(400);
    expect(err.message).toBe("Bad Request");
    expect(err.response.body).toEqual({
      errors: [
        {
          message: "Does not contain a valid address.",
          field: "personalizations.1.to.0.email",
          help: `${HELP}#personalizations.to.email`,
        },
        {
          message: "Invalid type. Expected: string, given: null.",
          field: "attachments.0.type",
          help: `${HELP}#attachments.type`,
        },
        {
          message: "The categories must be a unique list, and you have included [dup] more than once.",
          field: "categories",
          help: `${HELP}#categories`,
        },
      ],
    });
    // The client prints each error's message, field and help.
    expect(String(err)).toContain("Invalid type. Expected: string, given: null.\n    attachments.0.type");
  });
});

describe("@sendgrid/client against the stack", () => {
  it("a dynamic template with an attachment and an inline image, as a raw v3 body", async () => {
    const templatesKey = await stack.admin.createApiKey(stack.tenantId, {
      name: "compat-templates",
      environment: "live",
      scopes: ["templates.read", "templates.write"],
    });
    const client = httpClient(templatesKey.api_key);
    const [created, tpl] = await client.request({
      method: "POST",
      url: "/v3/templates",
      body: { name: "compat-invoice", generation: "dynamic" },
    });
    expect(created.statusCode).toBe(201);
    const templateId = (tpl as { id: string }).id;
    const [version] = await client.request({
      method: "POST",
      url: `/v3/templates/${templateId}/versions`,
      body: {
        name: "v1",
        active: 1,
        subject: "Invoice {{number}}",
        html_content: '<p>Dear {{name}},</p><img src="cid:brand"><p>{{#each lines}}{{this}};{{/each}}</p>',
        plain_content: "Dear {{name}}, invoice {{number}}",
      },
    });
    expect(version.statusCode).toBe(201);

    const [res] = await httpClient(stack.liveKey.api_key).request({
      method: "POST",
      url: "/v3/mail/send",
      body: {
        from,
        template_id: templateId,
        personalizations: [
          {
            to: [{ email: "inv@inbox.test" }],
            dynamic_template_data: { name: "Cy & Co", number: "I-9", lines: ["a", "b"] },
          },
        ],
        attachments: [
          { content: PDF.toString("base64"), filename: "invoice I-9.pdf", type: "application/pdf" },
          {
            content: PNG.toString("base64"),
            filename: "brand.png",
            type: "image/png",
            disposition: "inline",
            content_id: "brand",
          },
        ],
      },
    });
    expect(res.statusCode).toBe(202);
    const raw = (await deliveredRaw([res.headers["x-message-id"]!])).get("inv@inbox.test")!;
    const mail = await simpleParser(raw, { skipImageLinks: true });
    expect(mail.subject).toBe("Invoice I-9");
    expect(String(mail.html)).toContain('<p>Dear Cy &amp; Co,</p><img src="cid:brand"><p>a;b;</p>');
    expect(mail.text?.trim()).toBe("Dear Cy & Co, invoice I-9");
    expect(mail.attachments.map((a) => [a.filename, sha(a.content), a.related === true])).toEqual([
      ["brand.png", sha(PNG), true],
      ["invoice I-9.pdf", sha(PDF), false],
    ]);
    expect(mail.attachments[0]).toMatchObject({ cid: "brand", contentDisposition: "inline" });
    expect(headOf(raw)).toMatch(/^Content-Type: multipart\/mixed;/m);
    expect(raw.toString("latin1")).toMatch(/Content-Type: multipart\/related; type="text\/html";/);
    await expectDkimPass(raw);
  });

  it("unknown keys and nulls in a hand-written body: one ResponseError listing each at its path", async () => {
    const err = await rejection(
      httpClient(stack.liveKey.api_key).request({
        method: "POST",
        url: "/v3/mail/send",
        body: {
          from,
          subject: "Typos",
          content: [{ type: "text/plain", value: "x" }],
          reply_to: null,
          personalizations: [{ to: [{ email: "t@inbox.test" }], dynamicTemplateData: { a: 1 } }],
          sendAt: 1,
        },
      }),
    );
    expect(err.code).toBe(400);
    const unknown = (key: string) =>
      `Unknown field [${key}]: the mail/send body has no such parameter here. Remove it, or check its spelling (field names are snake_case, e.g. template_id).`;
    expect(err.response.body).toEqual({
      errors: [
        {
          message: unknown("dynamicTemplateData"),
          field: "personalizations.0.dynamicTemplateData",
          help: `${HELP}#personalizations`,
        },
        {
          message: "Invalid type. Expected: object, given: null.",
          field: "reply_to",
          help: `${HELP}#reply-to`,
        },
        { message: unknown("sendAt"), field: "sendAt", help: `${HELP}#fields` },
      ],
    });
    // Nothing was accepted: the recipient never hears of it.
    expect(stack.smtp.messages.some((m) => m.rcptTo.includes("t@inbox.test"))).toBe(false);
  });
});
