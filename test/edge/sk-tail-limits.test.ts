/**
 * The limits of GET /v1/messages?tail=1 (docs/api/senderkit.md#live-tail) on the real app in workerd
 * with the real D1: the server closes the stream by itself after SENDERKIT_TAIL_MAX_SECONDS (here a
 * few seconds, set in the Worker's bindings), and a poll whose D1 read fails is an `error` event
 * `poll_failed` after which the stream stays open and delivers the next change.
 *
 * The failing read is a real D1 error: the stream filters on metadata, and one of the tenant's own
 * rows is given malformed JSON metadata, on which SQLite's json_type() raises "malformed JSON".
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { expectSchema } from "../helpers/openapi-edge.ts";
import { BASE, createTenant } from "./helpers.ts";
import { skKey, v1 } from "./senderkit-templates.helpers.ts";

const app = createApp();

interface SseEvent {
  event: string;
  data: any;
}

/** Reads SSE blocks (`event:`/`data:` lines; comment lines skipped) off a byte stream. */
class SseReader {
  private buf = "";
  private readonly dec = new TextDecoder();
  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** The next event, or null when the server closed the stream. */
  async next(): Promise<SseEvent | null> {
    for (;;) {
      const end = this.buf.indexOf("\n\n");
      if (end >= 0) {
        const block = this.buf.slice(0, end);
        this.buf = this.buf.slice(end + 2);
        const lines = block.split("\n").filter((l) => !l.startsWith(":"));
        if (lines.length === 0) continue;
        const event = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? "message";
        const data = lines.find((l) => l.startsWith("data: "))?.slice(6);
        return { event, data: data === undefined ? null : JSON.parse(data) };
      }
      const { value, done } = await this.reader.read();
      if (done) return null;
      this.buf += this.dec.decode(value, { stream: true });
    }
  }

  /** Events up to and including the first one `match` accepts. */
  async until(match: (e: SseEvent) => boolean): Promise<SseEvent[]> {
    const seen: SseEvent[] = [];
    for (;;) {
      const e = await this.next();
      if (!e) throw new Error(`stream closed before the expected event; saw ${JSON.stringify(seen)}`);
      seen.push(e);
      if (match(e)) return seen;
    }
  }
}

/** Opens a tail on the real app with SENDERKIT_TAIL_MAX_SECONDS set in its bindings. */
async function openTail(key: string, query: string, maxSeconds: number) {
  const bindings = {
    ...(env as unknown as Bindings),
    SENDERKIT_TAIL_MAX_SECONDS: String(maxSeconds),
  } as Bindings;
  const ctx = createExecutionContext();
  const res = await app.request(
    `${BASE}/v1/messages?tail=1${query}`,
    { headers: { Authorization: `Bearer ${key}` } },
    bindings,
    ctx,
  );
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const reader = res.body!.getReader();
  return { sse: new SseReader(reader), reader, done: () => waitOnExecutionContext(ctx) };
}

describe("GET /v1/messages?tail=1 limits", () => {
  it("the server closes the stream by itself after SENDERKIT_TAIL_MAX_SECONDS", async () => {
    const key = await skKey(await createTenant(), "test");
    const tail = await openTail(key, "", 2);
    const events: SseEvent[] = [];
    for (let e = await tail.sse.next(); e; e = await tail.sse.next()) events.push(e);
    // Nothing was sent in this workspace: the backfill is empty, `ready`, then the server's close.
    expect(events).toEqual([{ event: "ready", data: {} }]);
    await tail.done();
  }, 30_000);

  it("a poll whose D1 read fails is an error event poll_failed; the stream stays open and delivers the next change", async () => {
    const key = await skKey(await createTenant(), "test");
    const sent = await v1(key, "/send", {
      method: "POST",
      body: { channel: "sms", to: "+14155550123", content: { body: "hi" }, metadata: { k: 1 } },
    });
    expect(sent.status).toBe(202);
    const id = sent.body.id as string;
    // Test mode's synthesized lifecycle ends delivered and written to D1; later steps would rewrite the row.
    const row = () =>
      env.DB.prepare("SELECT status FROM sk_messages WHERE id = ?").bind(id).first<{ status: string }>();
    for (let i = 0; (await row())?.status !== "delivered"; i++) {
      if (i > 100) throw new Error("the test message never reached delivered in D1");
      await new Promise((r) => setTimeout(r, 100));
    }

    const tail = await openTail(key, "&metadata[k]=1", 120);
    const backfill = await tail.sse.until((e) => e.event === "ready");
    expect(backfill.map((e) => [e.event, e.data.publicId])).toEqual([
      ["message", id],
      ["ready", undefined],
    ]);

    const touch = (metadata: string) =>
      env.DB.prepare("UPDATE sk_messages SET metadata = ?, updated_at = ? WHERE id = ?")
        .bind(metadata, Date.now(), id)
        .run();
    await touch("{not json");
    const failed = (await tail.sse.until((e) => e.event === "error")).at(-1)!;
    expect(failed.data).toMatchObject({ code: "poll_failed" });
    expect(failed.data.message).toContain("the stream stays open");

    await touch(JSON.stringify({ k: 1, fixed: true }));
    const changed = (
      await tail.sse.until((e) => e.event === "message" && e.data.metadata?.fixed === true)
    ).at(-1)!;
    expectSchema(changed.data, "Message");
    expect([changed.data.publicId, changed.data.status]).toEqual([id, "delivered"]);

    // The client goes away; the next write (another change) fails and the poll loop stops.
    await tail.reader.cancel();
    await touch(JSON.stringify({ k: 1, fixed: true, again: true }));
    await tail.done();
  }, 60_000);
});
