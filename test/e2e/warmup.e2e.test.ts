/**
 * Warm-up end to end (docs/operations.md, "Throttling and warm-up"): the edge (wrangler dev) → hub →
 * an origin node started with WARMUP_SCHEDULE / WARMUP_START → loopback DNS and SMTP. A message with
 * more recipients than the sender's allowance for today is delivered up to the allowance; the rest
 * are deferred, not bounced, and the hub schedules their retry for the next UTC day (the outcome's
 * retryAfterMs, docs/link-protocol.md), without using a retry step. /metrics shows the allowance.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { createLogger } from "../../origin/src/ops/log.ts";
import { startOriginNode, type OriginNode } from "../../origin/src/node.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

let stack: Stack;
let origin: OriginNode | null = null;
let journalDir: string;

beforeAll(async () => {
  stack = await startStack({ startOrigin: false });
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);
  journalDir = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-warmup-journal-"));
  const today = new Date().toISOString().slice(0, 10);
  origin = await startOriginNode(
    loadOriginConfig({
      EDGE_URL: stack.edge.workerUrl,
      ORIGIN_TOKEN: stack.secrets.ORIGIN_TOKEN,
      VERP_SECRET: stack.secrets.VERP_SECRET,
      NODE_ID: `e2e-warmup-${randomBytes(3).toString("hex")}`,
      HELO_NAME: "origin.e2e.test",
      SMTP_PORT: String(stack.smtp.port),
      DNS_SERVERS: stack.dns.server,
      ALLOW_PRIVATE_MX: "true", // the test zone's MX host is on 127.0.0.1
      HTTP_PORT: "0",
      CONNECT_TIMEOUT_MS: "3000",
      DRAIN_TIMEOUT_MS: "5000",
      JOURNAL_DIR: journalDir,
      WARMUP_SCHEDULE: "2,100",
      WARMUP_START: `${SENDER_DOMAIN}=${today}`,
    }),
    createLogger(process.env.E2E_LOG === "1" ? "debug" : "error"),
  );
});

afterAll(async () => {
  await origin?.drain();
  await stack?.stop();
  if (journalDir) fs.rmSync(journalDir, { recursive: true, force: true });
});

describe("warm-up through the whole stack", () => {
  it("delivers today's allowance, defers the rest to the next UTC day (not bounced, no retry step), and /metrics shows it", async () => {
    const to = ["w1@inbox.test", "w2@inbox.test", "w3@inbox.test"];
    const sent = await stack.api("POST", "/v3/mail/send", stack.liveKey.api_key, {
      personalizations: [{ to: to.map((email) => ({ email })) }],
      from: { email: `app@${SENDER_DOMAIN}` },
      subject: "warm-up",
      content: [{ type: "text/plain", value: "day one" }],
    });
    expect(sent.status).toBe(202);
    const messageId = sent.headers.get("x-message-id")!;
    const resultAt = Date.now();

    // One result: two delivered, one deferred; the message waits in the queue for tomorrow. (It reads
    // `queued` from the 202 on, so wait for the result's events.)
    const m = await stack.waitForMessage(
      messageId,
      (body) =>
        body.status === "queued" &&
        body.events.some((e: { event_type: string }) => e.event_type === "deferred"),
    );
    const nextUtcDay = Math.floor(resultAt / 86_400_000) * 86_400_000 + 86_400_000;
    const byType = (type: string) => m.events.filter((e: { event_type: string }) => e.event_type === type);
    expect(
      byType("delivered")
        .map((e: { recipient_email: string }) => e.recipient_email)
        .sort(),
    ).toEqual(["w1@inbox.test", "w2@inbox.test"]);
    const [deferred] = byType("deferred");
    expect(deferred.recipient_email).toBe("w3@inbox.test");
    expect(deferred.metadata.smtp_response).toMatch(
      /^warm-up allowance for sender\.test reached: 2 of 2 recipients today \(day 1 of 2\); retry after /,
    );
    expect(deferred.metadata.next_retry_at).toBeGreaterThanOrEqual(Math.floor(nextUtcDay / 1000));
    expect(byType("bounce")).toHaveLength(0);
    expect(m.deferrals).toBe(0);
    // The sink saw the allowance and no more.
    const seen = stack.smtp.messages.flatMap((msg) => msg.rcptTo).filter((r) => to.includes(r));
    expect(seen.sort()).toEqual(["w1@inbox.test", "w2@inbox.test"]);

    const metrics = await (await fetch(`http://127.0.0.1:${origin!.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^scaisend_origin_warmup_allowance\{sender="sender\.test"\} 2$/m);
    expect(metrics).toMatch(/^scaisend_origin_warmup_remaining\{sender="sender\.test"\} 0$/m);
    expect(metrics).toMatch(
      /^scaisend_origin_throttled_recipients_total\{destination="\*",reason="warmup"\} 1$/m,
    );
  });
});
