/**
 * D1 failing while the hub records results (README "How it works": a message is in the hub's outbox
 * until its outcome is recorded; origins re-send results until the edge acknowledges them). D1 is
 * made to fail for real: the `events` table is renamed away for the duration, so every batch that
 * records a result fails, then renamed back with its rows and indexes as they were.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import type { OriginFrame } from "../../shared/link/protocol.ts";
import {
  eventually,
  getMessage,
  LinkClient,
  mailBody,
  openLink,
  sendOne,
  setupTenant,
  breakD1,
  restoreD1,
} from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");

/** The events table's shape: columns and indexes, to check that the restore is exact. */
async function eventsSchema(): Promise<unknown> {
  const columns = await env.DB.prepare(
    "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('events')",
  ).all();
  const indexes = await env.DB.prepare(
    "SELECT name, \"unique\", partial FROM pragma_index_list('events') ORDER BY name",
  ).all();
  return { columns: columns.results, indexes: indexes.results };
}

function outboxRow(messageId: string): Promise<{ state: string } | undefined> {
  return runInDurableObject(
    hub(),
    (_instance, state) =>
      state.storage.sql
        .exec<{ state: string }>("SELECT state FROM outbox WHERE message_id = ?", messageId)
        .toArray()[0],
  );
}

const opened: LinkClient[] = [];
afterEach(async () => {
  await restoreD1();
  for (const l of opened.splice(0)) l.close();
});

describe("D1 fails while a result is being recorded", () => {
  it("does not acknowledge the result or lose the message, and records it once when the origin re-sends it after D1 is back", async () => {
    const t = await setupTenant();
    const shape = await eventsSchema();
    const origin = await openLink();
    opened.push(origin);
    await origin.hello(1);
    const id = await sendOne(t.liveKey, mailBody(t.from));
    const [job] = await origin.jobs(1);
    origin.send({ type: "ack", jobIds: [job!.jobId] });
    // The hub's own "handed to an origin" write has landed before D1 goes away.
    await eventually(
      () => getMessage(t.liveKey, id),
      (m) => m.status === "processing",
    );

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
    origin.send(result);
    // An invalid frame is answered in order after the result has been taken in; the hub then
    // tries to write it, fails, and keeps the message leased to this origin (not acknowledged).
    origin.send({ type: "credit", credits: 0 } as never);
    await origin.next("error");
    const afterFailure = await eventually(
      () => outboxRow(id),
      (row) => row?.state !== "recording",
    );
    expect(afterFailure).toEqual({ state: "leased" });
    expect(await origin.nothing("resultAck", 0)).toBe(true);
    expect(await hub().stats()).toMatchObject({ ready: 0, leased: 1 });

    await restoreD1();
    expect(await eventsSchema()).toEqual(shape);
    // Nothing of the failed write reached D1.
    const before = await getMessage(t.liveKey, id);
    expect(before.status).toBe("processing");
    expect(before.events.map((e) => e.event_type)).toEqual(["processed"]);

    // The origin re-sends the unacknowledged result (EdgeLink does so periodically and on reconnect).
    origin.send(result);
    expect(await origin.next("resultAck")).toEqual({ type: "resultAck", jobIds: [job!.jobId] });
    expect(await origin.nothing("resultAck", 0)).toBe(true);
    const m = await getMessage(t.liveKey, id);
    expect(m.status).toBe("delivered");
    expect(m.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
    expect(await outboxRow(id)).toBeUndefined();

    // Acknowledged once: a later copy is acknowledged again but recorded no second time.
    origin.send(result);
    expect(await origin.next("resultAck")).toEqual({ type: "resultAck", jobIds: [job!.jobId] });
    const again = await getMessage(t.liveKey, id);
    expect(again.events.map((e) => e.event_type)).toEqual(["processed", "delivered"]);
  });
});
