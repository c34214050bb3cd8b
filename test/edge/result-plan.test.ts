import { describe, expect, it } from "vitest";
import { createRetrySchedule } from "../../shared/delivery/retry-schedule.ts";
import type { RecipientOutcome } from "../../shared/link/protocol.ts";
import { planResult, type AttemptState } from "../../edge/src/services/result-plan.ts";

const schedule = createRetrySchedule("1m,5m");
const NOW = 1_800_000_000_000;
const row = (over: Partial<AttemptState> = {}): AttemptState => ({
  message_id: "msg_A",
  tenant_id: "tnt_A",
  dispatches: 1,
  deferrals: 0,
  delivered: 0,
  bounced: 0,
  failed: 0,
  ...over,
});
const delivered = (recipient: string): RecipientOutcome => ({
  recipient,
  status: "delivered",
  smtpCode: 250,
  response: "250 2.0.0 OK",
  mxHost: "mx.example",
  tls: true,
  latencyMs: 12.4,
});
const deferred = (recipient: string): RecipientOutcome => ({
  recipient,
  status: "deferred",
  smtpCode: 451,
  enhancedCode: "4.7.1",
  response: "451 4.7.1 Greylisted",
});
const bounced = (recipient: string): RecipientOutcome => ({
  recipient,
  status: "bounced",
  smtpCode: 550,
  enhancedCode: "5.1.1",
  bounceType: "hard",
  response: "550 5.1.1 User unknown",
});

describe("planResult", () => {
  it("all recipients delivered → delivered, one delivered event each with SMTP metadata", () => {
    const plan = planResult(row(), [delivered("A@x.test"), delivered("b@y.test")], schedule, NOW);
    expect(plan.status).toBe("delivered");
    expect(plan.retryRecipients).toEqual([]);
    expect(plan.errorMessage).toBeUndefined();
    const events = plan.events("tnt_A");
    expect(events.map((e) => [e.eventType, e.recipientEmail])).toEqual([
      ["delivered", "a@x.test"],
      ["delivered", "b@y.test"],
    ]);
    expect(events[0]!.metadata).toEqual({
      smtp_response: "250 2.0.0 OK",
      smtp_code: 250,
      mx_host: "mx.example",
      tls: true,
      attempt: 1,
      latency_ms: 12,
    });
    expect(events.every((e) => e.attempt === 1 && e.timestamp === NOW && e.tenantId === "tnt_A")).toBe(true);
  });

  it("a deferral with retries left waits for the schedule's interval for that deferral", () => {
    const plan = planResult(row({ dispatches: 2, deferrals: 1 }), [deferred("a@x.test")], schedule, NOW);
    expect(plan.status).toBe("queued");
    expect(plan.deferrals).toBe(2);
    expect(plan.retryRecipients).toEqual(["a@x.test"]);
    expect(plan.retryAt).toBe(NOW + 5 * 60_000);
    const [event] = plan.events("tnt_A");
    expect(event!.eventType).toBe("deferred");
    expect(event!.metadata).toMatchObject({
      status: "4.7.1",
      next_retry_at: Math.floor((NOW + 300_000) / 1000),
    });
  });

  // Issue 6, item 8: re-dispatches after dropped links or expired leases do not burn retry steps.
  it("the retry delay follows the deferral count, not the dispatch count", () => {
    const plan = planResult(row({ dispatches: 7, deferrals: 0 }), [deferred("a@x.test")], schedule, NOW);
    expect(plan.status).toBe("queued");
    expect(plan.retryAt).toBe(NOW + 60_000);
    expect(plan.deferrals).toBe(1);
    // Events still name the dispatch that produced them.
    expect(plan.events("tnt_A")[0]!.metadata).toMatchObject({ attempt: 7 });
  });

  it("a result without deferred recipients leaves the deferral count as it was", () => {
    const plan = planResult(row({ deferrals: 1 }), [delivered("a@x.test")], schedule, NOW);
    expect(plan.deferrals).toBe(1);
  });

  it("a deferral after the last scheduled retry becomes a soft bounce", () => {
    const plan = planResult(row({ dispatches: 3, deferrals: 2 }), [deferred("a@x.test")], schedule, NOW);
    expect(plan.status).toBe("bounced");
    expect(plan.retryRecipients).toEqual([]);
    expect(plan.events("tnt_A").map((e) => e.eventType)).toEqual(["deferred", "bounce"]);
    expect(plan.events("tnt_A")[1]!.metadata).toMatchObject({
      bounce_type: "soft",
      reason: "retries exhausted: 451 4.7.1 Greylisted",
    });
    expect(plan.errorMessage).toBe("451 4.7.1 Greylisted");
  });

  it("only the deferred recipients of a mixed result retry", () => {
    const plan = planResult(row(), [delivered("a@x.test"), deferred("b@y.test")], schedule, NOW);
    expect(plan.status).toBe("queued");
    expect(plan.retryRecipients).toEqual(["b@y.test"]);
    expect(plan.totals).toEqual({ delivered: 1, bounced: 0, failed: 0 });
    expect(plan.recipientStatuses).toEqual([
      { email: "a@x.test", status: "delivered" },
      { email: "b@y.test", status: "deferred" },
    ]);
  });

  it("a message is delivered if any recipient was, counting earlier attempts", () => {
    const plan = planResult(
      row({ dispatches: 3, deferrals: 2, delivered: 1 }),
      [deferred("b@y.test")],
      schedule,
      NOW,
    );
    expect(plan.status).toBe("delivered");
    expect(plan.errorMessage).toBeUndefined();
  });

  it("all recipients bounced → bounced with the server's reason as the error message", () => {
    const plan = planResult(row(), [bounced("a@x.test")], schedule, NOW);
    expect(plan.status).toBe("bounced");
    expect(plan.errorMessage).toBe("550 5.1.1 User unknown");
    expect(plan.events("tnt_A")[0]!.metadata).toMatchObject({
      bounce_type: "hard",
      status: "5.1.1",
      smtp_code: 550,
    });
  });

  it("a failure on the origin (e.g. the message could not be signed) is a dropped event and status failed", () => {
    const plan = planResult(
      row(),
      [{ recipient: "a@x.test", status: "failed", response: "DKIM signing failed" }],
      schedule,
      NOW,
    );
    expect(plan.status).toBe("failed");
    expect(plan.events("tnt_A").map((e) => [e.eventType, e.metadata.reason])).toEqual([
      ["dropped", "DKIM signing failed"],
    ]);
  });
});
