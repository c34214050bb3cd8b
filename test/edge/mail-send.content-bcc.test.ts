/**
 * Through the real Worker, D1 and hub shard (hub-0), the origin's side played over a real /link
 * WebSocket (docs/api/sendgrid.md#other-content-types, #fields): content types besides text/plain and
 * text/html travel in the delivery job as `alternatives` (the origin builds them into the MIME:
 * test/origin/build-mime.alternatives.test.ts); `mail_settings.bcc` makes its address one more
 * envelope recipient of every message, with its own `processed` event and outcome.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createApiKey,
  eventually,
  getMessage,
  mailBody,
  openLink,
  resetHub,
  sendOne,
  setupTenant,
  type LinkClient,
  type TenantFixture,
} from "./helpers.ts";

let t: TenantFixture;
let key: string;
const opened: LinkClient[] = [];

beforeEach(async () => {
  await resetHub();
  t = await setupTenant();
  key = (await createApiKey(t.tenantId, { environment: "live", scopes: ["mail.send"] })).key;
});

afterEach(() => {
  for (const l of opened.splice(0)) l.close();
});

async function link(): Promise<LinkClient> {
  const l = await openLink();
  opened.push(l);
  await l.hello(10);
  return l;
}

const CALENDAR = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR";

describe("content types and mail_settings.bcc reach the delivery job", () => {
  it("text/x-amp-html and text/calendar travel as alternatives, in request order, substituted", async () => {
    const l = await link();
    const m = await sendOne(
      key,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "rcpt@example.net" }], substitutions: { "-name-": "Ann" } }],
        content: [
          { type: "text/plain", value: "Hi -name-" },
          { type: "text/html", value: "<p>Hi -name-</p>" },
          { type: "text/x-amp-html", value: "<html ⚡4email>Hi -name-</html>" },
          { type: "text/calendar", value: CALENDAR },
        ],
      }),
    );
    const [job] = await l.jobs(1);
    expect(job!.messageId).toBe(m);
    expect(job!.message.text).toBe("Hi Ann");
    expect(job!.message.alternatives).toEqual([
      { type: "text/x-amp-html", value: "<html ⚡4email>Hi Ann</html>" },
      { type: "text/calendar", value: CALENDAR },
    ]);
  });

  it("a plain send has no alternatives field", async () => {
    const l = await link();
    await sendOne(key, mailBody(t.from));
    const [job] = await l.jobs(1);
    expect(job!.message.alternatives).toBeUndefined();
  });

  it("mail_settings.bcc: its address is an envelope recipient of each message, never in a header", async () => {
    const l = await link();
    const m = await sendOne(
      key,
      mailBody(t.from, { mail_settings: { bcc: { enable: true, email: "archive@example.org" } } }),
    );
    const [job] = await l.jobs(1);
    expect(job!.recipients).toEqual(["rcpt@example.net", "archive@example.org"]);
    expect(job!.message.to).toEqual([{ email: "rcpt@example.net", name: "Recipient" }]);
    expect(job!.message.cc).toBeUndefined();
    expect(JSON.stringify(job!.message.headers)).not.toContain("archive@example.org");
    const d = await eventually(
      () => getMessage(key, m),
      (x) => x.events.length === 2,
      5000,
    );
    expect(d.events.map((e) => [e.event_type, e.recipient_email]).sort()).toEqual([
      ["processed", "archive@example.org"],
      ["processed", "rcpt@example.net"],
    ]);
    expect(d.to_emails).toEqual(["rcpt@example.net"]);
  });

  it("spam_check enabled is refused with a 400, nothing stored; disabled is accepted", async () => {
    const res = await sendOne(key, mailBody(t.from, { mail_settings: { spam_check: { enable: false } } }));
    expect(res).toMatch(/^msg_/);
    const { sendMail } = await import("./helpers.ts");
    const refused = await sendMail(
      key,
      mailBody(t.from, { mail_settings: { spam_check: { enable: true } } }),
    );
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { errors: { field: string }[] }).errors.map((e) => e.field)).toEqual([
      "mail_settings.spam_check",
    ]);
  });
});
