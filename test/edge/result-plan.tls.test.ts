// The TLS facts of an outcome (tlsVersion, MTA-STS mode and shortfall, docs/link-protocol.md) are
// kept in the event metadata the hub records, next to `tls` and `mx_host`.
import { describe, expect, it } from "vitest";
import { createRetrySchedule } from "../../shared/delivery/retry-schedule.ts";
import type { RecipientOutcome } from "../../shared/link/protocol.ts";
import { planResult, type AttemptState } from "../../edge/src/services/result-plan.ts";

const schedule = createRetrySchedule("1m,5m");
const NOW = 1_800_000_000_000;
const row: AttemptState = {
  message_id: "msg_T",
  tenant_id: "tnt_T",
  dispatches: 1,
  deferrals: 0,
  delivered: 0,
  bounced: 0,
  failed: 0,
};

describe("planResult keeps an outcome's TLS facts in its event", () => {
  it("delivered over TLS 1.3 under a testing policy → tls_version, mta_sts and mta_sts_failure", () => {
    const outcome: RecipientOutcome = {
      recipient: "a@x.test",
      status: "delivered",
      smtpCode: 250,
      response: "250 OK",
      mxHost: "mx.x.test",
      tls: true,
      tlsVersion: "TLSv1.3",
      mtaSts: {
        mode: "testing",
        failure: "the certificate of mx.x.test is not valid for it: self-signed certificate",
      },
    };
    const [event] = planResult(row, [outcome], schedule, NOW).events("tnt_T");
    expect(event!.metadata).toMatchObject({
      tls: true,
      tls_version: "TLSv1.3",
      mta_sts: "testing",
      mta_sts_failure: "the certificate of mx.x.test is not valid for it: self-signed certificate",
    });
  });

  it("deferred by an enforce policy → the deferred event says so; without the fields nothing is added", () => {
    const deferred: RecipientOutcome = {
      recipient: "b@y.test",
      status: "deferred",
      enhancedCode: "4.7.5",
      response: "MTA-STS policy for y.test requires TLS with a valid certificate from a listed MX host: …",
      tls: false,
      mtaSts: { mode: "enforce", failure: "no valid TLS with mx.y.test (127.0.0.1): …" },
    };
    const plain: RecipientOutcome = {
      recipient: "c@z.test",
      status: "delivered",
      response: "250 OK",
      tls: false,
    };
    const [first, second] = planResult(row, [deferred, plain], schedule, NOW).events("tnt_T");
    expect(first!.metadata).toMatchObject({ status: "4.7.5", mta_sts: "enforce", tls: false });
    expect(first!.metadata.mta_sts_failure).toMatch(/^no valid TLS/);
    expect(second!.metadata).not.toHaveProperty("mta_sts");
    expect(second!.metadata).not.toHaveProperty("tls_version");
  });
});
