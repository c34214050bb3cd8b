/** The edge's plan for inbound events (edge/src/services/inbound-event.ts): which are recorded, as what. */
import { describe, expect, it } from "vitest";
import { planInboundEvents, type InboundTarget } from "../../edge/src/services/inbound-event.ts";
import type { InboundEvent } from "../../shared/link/protocol.ts";

const target = (id: string, recipients: string[]): InboundTarget => ({
  id,
  tenantId: "tnt_1",
  messageIdHeader: `${id.slice(4).toLowerCase()}@mail.example.com`,
  recipients,
});
const targets = new Map([
  ["msg_A", target("msg_A", ["one@example.net"])],
  ["msg_B", target("msg_B", ["a@example.net", "b@example.net"])],
]);
const event = (over: Partial<InboundEvent>): InboundEvent => ({
  eventKey: "0123456789ABCDEFGHJKMNPQRS",
  type: "bounce",
  messageId: "msg_B",
  recipient: "a@example.net",
  messageIdSource: "verp",
  bounceType: "hard",
  reason: "user_unknown",
  status: "5.1.1",
  diagnostic: "550 5.1.1 unknown",
  receivedAt: 1_700_000_000_000,
  ...over,
});

describe("planInboundEvents", () => {
  it("records a bounce with a stable id, attempt 0, and marks the recipient bounced", () => {
    const plan = planInboundEvents([event({ recipient: "A@example.net" })], targets);
    expect(plan.events).toEqual([
      expect.objectContaining({
        id: "evt_0123456789ABCDEFGHJKMNPQRS",
        tenantId: "tnt_1",
        messageId: "msg_B",
        eventType: "bounce",
        recipientEmail: "a@example.net",
        attempt: 0,
        metadata: expect.objectContaining({
          bounce_type: "hard",
          bounce_reason: "user_unknown",
          status: "5.1.1",
        }),
      }),
    ]);
    expect(plan.bounced).toEqual([{ messageId: "msg_B", email: "a@example.net" }]);
  });

  it("attributes a report without a usable recipient to a single-recipient message only", () => {
    const plan = planInboundEvents(
      [
        event({ eventKey: "K1".padEnd(26, "0"), messageId: "msg_A", recipient: null, type: "spam_report" }),
        event({ eventKey: "K2".padEnd(26, "0"), messageId: "msg_A", recipient: "forwarded@else.example" }),
        event({ eventKey: "K3".padEnd(26, "0"), messageId: "msg_B", recipient: null, type: "spam_report" }),
        event({ eventKey: "K4".padEnd(26, "0"), messageId: "msg_B", recipient: "c@example.net" }),
      ],
      targets,
    );
    expect(plan.events.map((e) => [e.id, e.recipientEmail, e.metadata.reported_recipient])).toEqual([
      ["evt_K1000000000000000000000000".slice(0, 30), "one@example.net", null],
      ["evt_K2000000000000000000000000".slice(0, 30), "one@example.net", "forwarded@else.example"],
    ]);
    expect(plan.skipped.map((s) => s.why)).toEqual(["no recipient named", "not a recipient of this message"]);
    expect(plan.bounced).toEqual([{ messageId: "msg_A", email: "one@example.net" }]);
  });

  it("skips unknown messages, a Message-ID that is not the message's own, and duplicates in one frame", () => {
    const plan = planInboundEvents(
      [
        event({ messageId: "msg_Z" }),
        event({ eventKey: "M".repeat(26), messageIdSource: "message-id", messageIdHeader: "b@evil.example" }),
        event({
          eventKey: "N".repeat(26),
          messageIdSource: "message-id",
          messageIdHeader: "B@MAIL.example.com",
        }),
        event({
          eventKey: "N".repeat(26),
          messageIdSource: "message-id",
          messageIdHeader: "B@MAIL.example.com",
        }),
      ],
      targets,
    );
    expect(plan.skipped.map((s) => s.why)).toEqual([
      "no such message",
      "the returned Message-ID is not this message's",
    ]);
    expect(plan.events.map((e) => e.id)).toEqual([`evt_${"N".repeat(26)}`]);
  });
});
