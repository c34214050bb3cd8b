/**
 * A renewal (`ack`) that reaches the hub while the job's result is being written to D1 (the row is
 * `recording`) still extends the lease (docs/link-protocol.md: an origin renews every job it holds,
 * and every job whose result waits for resultAck, every LINK_LEASE_MS / 5). If that write fails, the
 * row goes back to `leased` and the origin re-sends the result; had the renewal been dropped, a D1
 * outage longer than the lease would let the alarm hand the job out again and the message would be
 * delivered twice. Origins re-send results and renew on timers, so a renewal right behind a re-sent
 * result is the common case, not a corner. Issue 6, item 11.
 *
 * The two frames are handed to the hub's WebSocket handler back to back inside the object, so the
 * renewal is handled before the result's D1 batch runs (the order a busy link produces). D1 fails for
 * real: the `events` table is renamed away for the duration, as in hub-d1-failure.test.ts.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { OriginFrame } from "../../shared/link/protocol.ts";
import {
  eventually,
  getMessage,
  type LinkClient,
  linkSettled,
  mailBody,
  openLink,
  sendOne,
  setupTenant,
  breakD1,
  restoreD1,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

// A type alias, not an interface: SqlStorage rows must be assignable to Record<string, SqlStorageValue>.
type LeaseView = {
  state: string;
  lease_until: number | null;
};

function leaseOf(messageId: string): Promise<LeaseView | undefined> {
  return runInDurableObject(
    hub(),
    (_instance, state) =>
      state.storage.sql
        .exec<LeaseView>("SELECT state, lease_until FROM outbox WHERE message_id = ?", messageId)
        .toArray()[0],
  );
}

const opened: LinkClient[] = [];
afterEach(async () => {
  await restoreD1();
  for (const l of opened.splice(0)) l.close();
});

describe("a renewal while the result is being recorded", () => {
  it("extends the lease, so a failed write leaves the job leased to its origin until the re-sent result lands", async () => {
    const t = await setupTenant();
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await origin.jobs(1);
    origin.send({ type: "ack", jobIds: [job!.jobId] });
    await linkSettled(origin);
    await eventually(
      () => getMessage(t.liveKey, id),
      (m) => m.status === "processing",
    );
    const first = await leaseOf(id);
    expect(first).toMatchObject({ state: "leased" });

    const result: OriginFrame = {
      type: "result",
      jobId: job!.jobId,
      messageId: id,
      attempt: job!.attempt,
      recipients: [
        { recipient: "rcpt@example.net", status: "delivered", smtpCode: 250, response: "250 2.0.0 OK" },
      ],
    };
    await breakD1();
    // Later than the first ack (LINK_LEASE_MS is 300 s here), so an applied renewal ends the lease later.
    const before = Date.now();
    expect(before).toBeGreaterThan(first!.lease_until! - 300_000);
    const during = await runInDurableObject(hub(), async (instance, state) => {
      const ws = state.getWebSockets().find((w) => {
        const a = w.deserializeAttachment() as { nodeId: string | null } | null;
        return a?.nodeId === origin.nodeId;
      })!;
      await instance.webSocketMessage(ws, JSON.stringify(result));
      const recording = state.storage.sql
        .exec<LeaseView>("SELECT state, lease_until FROM outbox WHERE message_id = ?", id)
        .one();
      await instance.webSocketMessage(ws, JSON.stringify({ type: "ack", jobIds: [job!.jobId] }));
      return recording;
    });
    // The renewal was handled while the result waited for its D1 batch.
    expect(during.state).toBe("recording");

    // The batch fails; the row is leased to this origin again, with the renewed lease.
    const after = await eventually(
      () => leaseOf(id),
      (row) => row?.state !== "recording",
    );
    expect(after?.state).toBe("leased");
    expect(after!.lease_until!).toBeGreaterThan(first!.lease_until!);
    expect(after!.lease_until!).toBeGreaterThanOrEqual(before + 300_000);

    // D1 is back; the origin's re-sent result is recorded once.
    await restoreD1();
    origin.send(result);
    expect(await origin.next("resultAck")).toEqual({ type: "resultAck", jobIds: [job!.jobId] });
    const m = await getMessage(t.liveKey, id);
    expect(m).toMatchObject({ status: "delivered", dispatches: 1 });
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
  });
});
