/**
 * Suppressions end to end (docs/api/sendgrid.md#suppressions): the whole stack on loopback (edge under
 * wrangler dev, a real origin, a real SMTP sink as the recipients' MX). A send hard-bounces at the
 * sink (550 5.1.1 at RCPT), the bounce event puts the address on the tenant's bounce list (the
 * `events_suppress_bounce` trigger), and the next send to it is dropped by the hub before dispatch:
 * a `dropped` event with reason "Bounced Address", status failed, and the sink never sees the address again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const rcptAttempts = new Map<string, number>();
let stack: Stack;
let key: string;

beforeAll(async () => {
  stack = await startStack({
    smtp: {
      onRcpt(address) {
        rcptAttempts.set(address.toLowerCase(), (rcptAttempts.get(address.toLowerCase()) ?? 0) + 1);
        if (address.endsWith("@unknown-user.test")) return { code: 550, message: "5.1.1 User unknown" };
        return null;
      },
    },
  });
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
  const k = await stack.admin.createApiKey(stack.tenantId, {
    name: "suppressions",
    environment: "live",
    scopes: ["mail.send", "suppressions.read", "suppressions.write"],
  });
  key = k.api_key;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const send = (to: string[], subject: string) =>
  stack.api("POST", "/v3/mail/send", key, {
    personalizations: [{ to: to.map((email) => ({ email })) }],
    from: { email: `app@${SENDER_DOMAIN}` },
    subject,
    content: [{ type: "text/plain", value: "x" }],
  });

describe("a hard bounce suppresses the next send", () => {
  it("bounces at the sink, lands on the bounce list, and the next send is dropped before dispatch", async () => {
    const first = await send(["Nobody@unknown-user.test"], "first");
    expect(first.status).toBe(202);
    const bounced = await stack.waitForStatus(first.body.message_id, ["bounced", "failed", "delivered"]);
    expect(bounced.status).toBe("bounced");
    expect(rcptAttempts.get("nobody@unknown-user.test")).toBe(1);

    const listed = await stack.api("GET", "/v3/suppression/bounces/nobody@unknown-user.test", key);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual([
      expect.objectContaining({ email: "nobody@unknown-user.test", status: "5.1.1", bounce_type: "hard" }),
    ]);
    expect(listed.body[0].reason).toMatch(/5\.1\.1 User unknown/);

    const before = stack.smtp.messages.length;
    const second = await send(["nobody@unknown-user.test", "alice@inbox.test"], "second");
    expect(second.status).toBe(202);
    const done = await stack.waitForMessage(
      second.body.message_id,
      (m) =>
        m.status === "delivered" && m.events.some((e: { event_type: string }) => e.event_type === "dropped"),
      30_000,
    );
    const drop = done.events.find((e: { event_type: string }) => e.event_type === "dropped");
    expect(drop).toMatchObject({
      recipient_email: "nobody@unknown-user.test",
      metadata: { reason: "Bounced Address" },
    });
    // Alice got it; the suppressed address never reached the sink again.
    expect(stack.smtp.messages.length).toBe(before + 1);
    expect(stack.smtp.messages.at(-1)!.rcptTo.map((a: string) => a.toLowerCase())).toEqual([
      "alice@inbox.test",
    ]);

    const third = await send(["nobody@unknown-user.test"], "third");
    const failed = await stack.waitForStatus(
      third.body.message_id,
      ["failed", "bounced", "delivered"],
      30_000,
    );
    expect(failed.status).toBe("failed");
    expect(failed.events.map((e: { event_type: string }) => e.event_type)).toEqual(["processed", "dropped"]);
    expect(rcptAttempts.get("nobody@unknown-user.test")).toBe(1);

    // Removed from the list, the address is tried again (and bounces again).
    expect((await stack.api("DELETE", "/v3/suppression/bounces/nobody@unknown-user.test", key)).status).toBe(
      204,
    );
    const fourth = await send(["nobody@unknown-user.test"], "fourth");
    expect(
      (await stack.waitForStatus(fourth.body.message_id, ["bounced", "failed", "delivered"], 30_000)).status,
    ).toBe("bounced");
    expect(rcptAttempts.get("nobody@unknown-user.test")).toBe(2);
  }, 120_000);
});
