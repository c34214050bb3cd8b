/**
 * The documented lifecycle queued → processing → rendered → sending → outcome
 * (docs/api/sendgrid.md#message-statuses) through the real Worker, D1 and hub shard (hub-0), the
 * origin's side played over a real /link WebSocket: dispatch makes a message `processing`; the
 * origin's renewal (`ack` with `stages`, docs/link-protocol.md#stages) moves it to `rendered` and
 * `sending`; GET /v3/messages/{id} and the list's status filter show each; a stage never moves a
 * status back, and a stage for a dispatch this origin process does not hold is ignored.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  bearer,
  call,
  createApiKey,
  eventually,
  getMessage,
  linkSettled,
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
  key = (await createApiKey(t.tenantId, { environment: "live", scopes: ["mail.send", "mail.schedule"] })).key;
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

async function listed(status: string): Promise<string[]> {
  const res = await call(`/v3/messages?status=${status}`, { headers: bearer(key) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { messages: { id: string }[] }).messages.map((m) => m.id);
}

const statusOf = async (id: string) => (await getMessage(key, id)).status;
const until = (id: string, status: string) =>
  eventually(
    () => statusOf(id),
    (s) => s === status,
    5000,
  );

describe("the message lifecycle", () => {
  it("queued → processing → rendered → sending → delivered, each seen by GET and the status filter", async () => {
    const m = await sendOne(key, mailBody(t.from, { send_at: Math.floor(Date.now() / 1000) + 600 }));
    expect(await statusOf(m)).toBe("queued");
    const l = await link();
    await eventually(
      () => listed("queued"),
      (ids) => ids.includes(m),
      5000,
    );
    // Due now: dispatched, and processing from then.
    await runInDurableObject(env.ORIGIN_HUB.getByName("hub-0"), (_i, s) => {
      s.storage.sql.exec("UPDATE outbox SET due_at = 0 WHERE message_id = ?", m);
    });
    l.send({ type: "credit", credits: 1 });
    const [job] = await l.jobs(1);
    l.send({ type: "ack", jobIds: [job!.jobId] });
    expect(await until(m, "processing")).toBe("processing");
    expect(await listed("processing")).toContain(m);

    l.send({ type: "ack", jobIds: [job!.jobId], stages: { rendered: [job!.jobId] } });
    expect(await until(m, "rendered")).toBe("rendered");
    expect(await listed("rendered")).toEqual([m]);
    expect(await listed("processing")).not.toContain(m);

    l.send({ type: "ack", jobIds: [job!.jobId], stages: { sending: [job!.jobId] } });
    expect(await until(m, "sending")).toBe("sending");
    expect(await listed("sending")).toEqual([m]);

    l.send({
      type: "result",
      jobId: job!.jobId,
      messageId: m,
      attempt: job!.attempt,
      recipients: [{ recipient: "rcpt@example.net", status: "delivered", smtpCode: 250, response: "250 OK" }],
    });
    expect(await until(m, "delivered")).toBe("delivered");
    await l.next("resultAck");
  });

  it("a renewal naming both stages lands on sending; a late stage never moves an outcome back", async () => {
    const l = await link();
    const m = await sendOne(key, mailBody(t.from));
    const [job] = await l.jobs(1);
    l.send({ type: "ack", jobIds: [job!.jobId], stages: { rendered: [job!.jobId], sending: [job!.jobId] } });
    expect(await until(m, "sending")).toBe("sending");
    l.send({
      type: "result",
      jobId: job!.jobId,
      messageId: m,
      attempt: job!.attempt,
      recipients: [{ recipient: "rcpt@example.net", status: "bounced", smtpCode: 550, response: "550 no" }],
    });
    expect(await until(m, "bounced")).toBe("bounced");
    // The row is gone from the outbox: a stale renewal with a stage names nothing held.
    l.send({ type: "ack", jobIds: [job!.jobId], stages: { rendered: [job!.jobId] } });
    await linkSettled(l);
    await new Promise((r) => setTimeout(r, 50));
    expect(await statusOf(m)).toBe("bounced");
  });

  it("ignores a stage for another dispatch, or from an origin process that does not hold the job", async () => {
    const l = await link();
    const m = await sendOne(key, mailBody(t.from));
    const [job] = await l.jobs(1);
    l.send({ type: "ack", jobIds: [job!.jobId] });
    await until(m, "processing");
    const other = await link();
    other.send({ type: "ack", jobIds: [], stages: { sending: [job!.jobId] } });
    l.send({ type: "ack", jobIds: [job!.jobId], stages: { rendered: [`${m}.7`] } });
    await linkSettled(other);
    await linkSettled(l);
    await new Promise((r) => setTimeout(r, 50));
    expect(await statusOf(m)).toBe("processing");
    // The holder's own report still counts.
    l.send({ type: "ack", jobIds: [job!.jobId], stages: { rendered: [job!.jobId] } });
    expect(await until(m, "rendered")).toBe("rendered");
  });
});
