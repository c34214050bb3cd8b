/**
 * Through wrangler dev, the hub and a real origin to the loopback MX, driven by SendGrid's own
 * @sendgrid/mail and @sendgrid/client (docs/api/sendgrid.md#other-content-types, #fields,
 * #retrying-a-message):
 *  - a send with text, AMP, HTML and a calendar invitation plus the older `mail_settings.bcc`
 *    arrives as one multipart/alternative in the order text, AMP, HTML, calendar (with its METHOD),
 *    to the bcc address too (never named in a header), with DKIM passing;
 *  - a message whose recipient's server answered 550 ends `bounced` (and the address on the bounce
 *    list); once the mailbox works again and the address is taken off the list, POST
 *    /v3/messages/{id}/retry re-queues it and it is delivered: the origin does not answer the retry
 *    with the bounce it stored for the message (freshFrom, docs/link-protocol.md#retried-messages).
 */
import { createRequire } from "node:module";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const require = createRequire(import.meta.url);
type ClientResponse = { statusCode: number; headers: Record<string, string>; body: any };
const MailService = require("@sendgrid/mail/src/classes/mail-service.js") as new () => {
  setApiKey(key: string): void;
  client: { setDefaultRequest(k: string, v: string): void };
  send(data: object): Promise<[ClientResponse, unknown]>;
};
const Client = require("@sendgrid/client/src/classes/client.js") as new () => {
  setApiKey(key: string): void;
  setDefaultRequest(k: string, v: string): void;
  request(req: { method: string; url: string; body?: unknown }): Promise<[ClientResponse, any]>;
};

let stack: Stack;
/** While true the MX answers 550 to flaky-… recipients. */
let refuseFlaky = true;

beforeAll(async () => {
  stack = await startStack({
    smtp: {
      onRcpt: (address) =>
        refuseFlaky && address.startsWith("flaky") ? { code: 550, message: "5.2.1 mailbox disabled" } : null,
    },
  });
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
});

afterAll(async () => {
  await stack?.stop();
});

const from = { email: `app@${SENDER_DOMAIN}`, name: "Invites" };
const CALENDAR = [
  "BEGIN:VCALENDAR",
  "VERSION:2.0",
  "PRODID:-//ScaiSend//e2e//EN",
  "METHOD:REQUEST",
  "BEGIN:VEVENT",
  "UID:standup-1@sender.test",
  "DTSTART:20261203T090000Z",
  "DTEND:20261203T091500Z",
  "SUMMARY:Standup",
  "END:VEVENT",
  "END:VCALENDAR",
].join("\r\n");
const AMP =
  '<!doctype html><html ⚡4email data-css-strict><head><meta charset="utf-8"></head><body>AMP</body></html>';

/** The Content-Type of each part of a multipart body, in order (boundaries walked by hand). */
function partTypes(raw: string): string[] {
  const head = raw.slice(0, raw.indexOf("\r\n\r\n")).replace(/\r\n[ \t]+/g, " ");
  const type = /^content-type:\s*(.*)$/im.exec(head)?.[1] ?? "";
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
  if (!boundary) return [];
  return raw
    .split(`--${boundary}`)
    .slice(1, -1)
    .map((part) => {
      const h = part.slice(0, part.indexOf("\r\n\r\n")).replace(/\r\n[ \t]+/g, " ");
      return (/^\s*content-type:\s*(.*)$/im.exec(h)?.[1] ?? "").trim();
    });
}

describe("content types and mail_settings.bcc through the stack", () => {
  it("text, AMP, HTML and calendar parts in that order, a copy to the bcc address, DKIM passing", async () => {
    const mail = new MailService();
    mail.setApiKey(stack.liveKey.api_key);
    mail.client.setDefaultRequest("baseUrl", `${stack.edge.url}/`);
    const [res] = await mail.send({
      to: "invitee@inbox.test",
      from,
      subject: "Standup tomorrow",
      content: [
        { type: "text/plain", value: "Standup at 9." },
        { type: "text/html", value: "<p>Standup at <b>9</b>.</p>" },
        { type: "text/x-amp-html", value: AMP },
        { type: "text/calendar", value: CALENDAR },
      ],
      mailSettings: { bcc: { enable: true, email: "archive@inbox.test" } },
    });
    expect(res.statusCode).toBe(202);
    const id = res.headers["x-message-id"]!;
    const done = await stack.waitForStatus(id, ["delivered", "bounced", "failed"], 60_000);
    expect(done.status, done.error_message).toBe("delivered");
    const got = stack.smtp.messages.find((m) => m.rcptTo.includes("invitee@inbox.test"))!;
    expect(got.rcptTo.sort()).toEqual(["archive@inbox.test", "invitee@inbox.test"]);
    const raw = got.raw.toString("utf8");
    const head = raw.slice(0, raw.indexOf("\r\n\r\n"));
    expect(head).not.toContain("archive@inbox.test");
    expect(partTypes(raw).map((t) => t.split(";")[0]!.toLowerCase())).toEqual([
      "text/plain",
      "text/x-amp-html",
      "text/html",
      "text/calendar",
    ]);
    expect(partTypes(raw)[3]!.replace(/\s+/g, " ")).toBe("text/calendar; charset=utf-8; method=REQUEST");
    const dkim = await dkimVerify(got.raw, { resolver: mailauthResolver(stack.dns.server) });
    expect(dkim.results.map((r) => [r.status.result, r.signingDomain])).toEqual([["pass", SENDER_DOMAIN]]);
  });
});

describe("POST /v3/messages/{id}/retry through the stack", () => {
  it("a bounced message is delivered once retried, after its address left the bounce list", async () => {
    const key = await stack.admin.createApiKey(stack.tenantId, {
      name: "retrier",
      environment: "live",
      scopes: ["mail.send", "suppressions.read", "suppressions.write"],
    });
    const client = new Client();
    client.setApiKey(key.api_key);
    client.setDefaultRequest("baseUrl", `${stack.edge.url}/`);
    const [sent] = await client.request({
      method: "POST",
      url: "/v3/mail/send",
      body: {
        personalizations: [{ to: [{ email: "flaky@inbox.test" }] }],
        from,
        subject: "Retried",
        content: [{ type: "text/plain", value: "second time lucky" }],
      },
    });
    expect(sent.statusCode).toBe(202);
    const id = sent.headers["x-message-id"]!;
    const bounced = await stack.waitForStatus(id, ["bounced", "delivered", "failed"], 60_000);
    expect(bounced.status).toBe("bounced");
    expect(stack.smtp.messages.filter((m) => m.rcptTo.includes("flaky@inbox.test"))).toEqual([]);

    // The mailbox works again; the address comes off the bounce list the hard bounce put it on.
    refuseFlaky = false;
    const [listed] = await client.request({ method: "GET", url: "/v3/suppression/bounces/flaky@inbox.test" });
    expect(listed.statusCode).toBe(200);
    const [removed] = await client.request({
      method: "DELETE",
      url: "/v3/suppression/bounces/flaky@inbox.test",
    });
    expect(removed.statusCode).toBe(204);

    const [retried, body] = await client.request({ method: "POST", url: `/v3/messages/${id}/retry` });
    expect([retried.statusCode, body]).toEqual([200, { message_id: id, status: "queued" }]);
    const done = await stack.waitForStatus(id, ["delivered", "failed"], 60_000);
    expect(done.status, done.error_message).toBe("delivered");
    const arrived = stack.smtp.messages.filter((m) => m.rcptTo.includes("flaky@inbox.test"));
    expect(arrived).toHaveLength(1);
    // The same message: its Message-ID did not change.
    expect(arrived[0]!.raw.toString("latin1")).toContain(`Message-ID: ${done.message_id_header}`);
    const types = done.events.map((e: { event_type: string }) => e.event_type);
    expect(types[0]).toBe("processed");
    expect(types).toContain("bounce");
    expect(types.at(-1)).toBe("delivered");
  });
});
