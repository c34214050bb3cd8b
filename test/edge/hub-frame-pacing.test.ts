/**
 * Frame pacing (OriginHub#takeBreath, docs/operations.md "Running the stack locally"): after
 * BUSY_SLICE_MS of frames back to back the hub pauses BREATH_MS so workerd's event loop can go idle
 * and serve new connections; frames that arrive meanwhile are still handled in arrival order.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LINK_PROTOCOL_VERSION } from "../../shared/link/protocol.ts";
import { eventually, openLink, resetHub, uid, type LinkClient } from "./helpers.ts";

const hub = () => env.ORIGIN_HUB.getByName("hub-0");
const breaths = () =>
  runInDurableObject(hub(), (instance) => (instance as unknown as { breaths: number }).breaths);

let l: LinkClient | null = null;
beforeEach(async () => {
  await resetHub();
});
afterEach(() => {
  l?.close();
  l = null;
});

describe("hub frame pacing", () => {
  it("pauses during a long stream of frames and still handles them in arrival order", async () => {
    l = await openLink();
    l.send({
      type: "hello",
      protocol: LINK_PROTOCOL_VERSION,
      nodeId: `node-${uid()}`,
      bootId: `boot-${uid()}`,
      version: "test",
      capacity: 1,
    });
    await l.next("welcome");
    const before = await breaths();
    // Enough frames that handling them takes longer than one busy slice; the order matters at the
    // end: a release zeroes the link's credits, so only the credit after it may remain.
    const n = 2000;
    for (let i = 0; i < n; i++) l.send({ type: "credit", credits: 1 });
    l.send({ type: "release", jobIds: [] });
    l.send({ type: "credit", credits: 7 });
    const total = n + 3; // with the hello
    const stats = await eventually(
      () => hub().stats(),
      (s) => s.links[0]?.framesIn === total,
      60_000,
    );
    expect(stats.links[0]!.framesIn).toBe(total);
    expect((await hub().stats()).links[0]!.credits).toBe(7);
    expect(await breaths()).toBeGreaterThan(before);
  }, 90_000);
});
