/**
 * A dynamic template end to end (docs/templates.md#where-rendering-happens): stored through
 * /v3/templates, sent with the official @sendgrid/mail (templateId + dynamicTemplateData) → edge
 * (wrangler dev: the template looked up, the job naming the version's snapshot in local R2) → hub →
 * origin over the link, which fetches the snapshot from /origin/templates, renders it and signs →
 * the loopback MX. At the sink: the rendered subject and bodies, DKIM passing. A personalization
 * whose data the template cannot render ends `failed` with the reason and never reaches the sink;
 * a deleted template makes new sends a 400 while mail already accepted still delivers.
 */
import { createRequire } from "node:module";
import { simpleParser } from "mailparser";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const require = createRequire(import.meta.url);
// The official client; its package exports a singleton, so build one per API key from its class.
const MailService = require("@sendgrid/mail/src/classes/mail-service.js") as new () => {
  setApiKey(key: string): void;
  client: { setDefaultRequest(k: string, v: string): void };
  send(
    data: object,
  ): Promise<[{ statusCode: number; headers: Record<string, string>; body: unknown }, unknown]>;
};

function sendgrid(apiKey: string, baseUrl: string) {
  const mail = new MailService();
  mail.setApiKey(apiKey);
  mail.client.setDefaultRequest("baseUrl", `${baseUrl}/`);
  return mail;
}

let stack: Stack;
let templatesKey = "";
let templateId = "";

beforeAll(async () => {
  stack = await startStack();
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
  const key = await stack.admin.createApiKey(stack.tenantId, {
    name: "templates",
    environment: "live",
    scopes: ["templates.read", "templates.write", "templates.delete"],
  });
  templatesKey = key.api_key;
  const tpl = await stack.api("POST", "/v3/templates", templatesKey, {
    name: "receipt",
    generation: "dynamic",
  });
  expect(tpl.status).toBe(201);
  templateId = tpl.body.id;
  const version = await stack.api("POST", `/v3/templates/${templateId}/versions`, templatesKey, {
    name: "v1",
    subject: "Order {{orderId}} for {{{name}}}",
    html_content: [
      "<p>Hi {{name}}</p>",
      "<ul>{{#each items}}<li>{{title}}{{#if @last}} (last){{/if}}</li>{{/each}}</ul>",
      '{{#equals status "paid"}}<b>Paid</b>{{else}}<b>Due</b>{{/equals}}',
      '<p>Shipped {{formatDate shippedAt "MMMM D, YYYY"}}</p>',
    ].join(""),
    active: 1,
  });
  expect(version.status, JSON.stringify(version.body)).toBe(201);
});

afterAll(async () => {
  await stack?.stop();
});

describe("a dynamic template through the stack", () => {
  it("arrives rendered per personalization with DKIM passing; bad data fails only its own message", async () => {
    const client = sendgrid(stack.liveKey.api_key, stack.edge.url);
    const before = stack.smtp.messages.length;
    const [res] = await client.send({
      from: { email: `app@${SENDER_DOMAIN}` },
      templateId,
      personalizations: [
        {
          to: "ann@inbox.test",
          dynamicTemplateData: {
            name: "Ann & <Co>",
            orderId: "A-17",
            status: "paid",
            items: [{ title: "Tea" }, { title: "Cups" }],
            shippedAt: "2026-03-05T10:00:00Z",
          },
        },
        {
          to: "bad@inbox.test",
          dynamicTemplateData: { name: "Bad", orderId: "B-1", items: [], shippedAt: "sometime soon" },
        },
      ],
    });
    expect(res.statusCode).toBe(202);

    const ids = (res.body as { message_ids: string[] }).message_ids;
    expect(ids).toHaveLength(2);
    const finals = await Promise.all(
      ids.map((id: string) => stack.waitForStatus(id, ["delivered", "bounced", "failed"], 60_000)),
    );
    const byRecipient = new Map(finals.map((m) => [m.to_emails[0], m]));
    expect(byRecipient.get("ann@inbox.test")?.status).toBe("delivered");
    const bad = byRecipient.get("bad@inbox.test");
    expect(bad?.status).toBe("failed");
    expect(bad?.error_message).toMatch(
      new RegExp(`^Could not render template ${templateId} \\(version [0-9a-f-]+\\): .*formatDate`),
    );

    const arrived = stack.smtp.messages.slice(before);
    expect(arrived.map((m) => m.rcptTo).flat()).toEqual(["ann@inbox.test"]);
    const raw = arrived[0]!.raw;
    const mail = await simpleParser(raw);
    expect(mail.subject).toBe("Order A-17 for Ann & <Co>");
    expect(String(mail.html)).toContain(
      "<p>Hi Ann &amp; &lt;Co&gt;</p><ul><li>Tea</li><li>Cups (last)</li></ul><b>Paid</b><p>Shipped March 5, 2026</p>",
    );
    const dkim = await dkimVerify(raw, { resolver: mailauthResolver(stack.dns.server) });
    expect(dkim.results.map((r) => [r.status.result, r.signingDomain])).toEqual([["pass", SENDER_DOMAIN]]);
  });

  it("after the template is deleted, new sends are a 400 and mail accepted before still delivers", async () => {
    const client = sendgrid(stack.liveKey.api_key, stack.edge.url);
    const data = { name: "Cy", orderId: "C-3", status: "due", items: [], shippedAt: "2026-03-05T10:00:00Z" };
    const [res] = await client.send({
      to: "cy@inbox.test",
      from: `app@${SENDER_DOMAIN}`,
      templateId,
      dynamicTemplateData: data,
    });
    expect(res.statusCode).toBe(202);
    const messageId = res.headers["x-message-id"]!;
    expect((await stack.api("DELETE", `/v3/templates/${templateId}`, templatesKey)).status).toBe(204);

    const err = await client
      .send({ to: "dee@inbox.test", from: `app@${SENDER_DOMAIN}`, templateId, dynamicTemplateData: data })
      .then(
        () => null,
        (e: { code: number; response: { body: unknown } }) => e,
      );
    expect(err?.code).toBe(400);
    expect(err?.response.body).toEqual({
      errors: [
        {
          message: `The Template ID must be a valid template id for your account. You provided ${templateId}.`,
          field: "template_id",
          help: "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send#template-id",
        },
      ],
    });

    const message = await stack.waitForStatus(messageId, ["delivered", "bounced", "failed"], 60_000);
    expect(message.status, message.error_message).toBe("delivered");
    const received = stack.smtp.messages.find((m) => m.rcptTo.includes("cy@inbox.test"));
    expect((await simpleParser(received!.raw)).subject).toBe("Order C-3 for Cy");
  });
});
