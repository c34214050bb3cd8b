/**
 * Round trips per accepted live send on a warm isolate (issue 7's target: one). The Worker's storage
 * bindings are wrapped by counting stand-ins (test/bench/lib/counting-bindings.ts): every D1 call and
 * every Durable Object call is one round trip. After one send has warmed the isolate (API key and
 * sender domains cached, a block of rate-limit tokens leased), each further send makes one call to its
 * hub shard and none to D1 (rate-limit leases are renewed now and then, not once per send).
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { countingD1, countingNamespace, newRoundTrips } from "../bench/lib/counting-bindings.ts";
import { BASE, bearer, mailBody, setupTenant } from "./helpers.ts";

describe("round trips of POST /v3/mail/send", () => {
  it("a warm isolate accepts a live send with one round trip: the hub shard's accept", async () => {
    const t = await setupTenant();
    const trips = newRoundTrips();
    const app = createApp();
    const bindings = {
      ...(env as unknown as Bindings),
      DB: countingD1(env.DB, trips),
      RATE_LIMITER: countingNamespace(env.RATE_LIMITER, "RATE_LIMITER", trips),
      ORIGIN_HUB: countingNamespace(env.ORIGIN_HUB, "ORIGIN_HUB", trips),
    } as Bindings;
    const send = async () => {
      const ctx = createExecutionContext();
      const res = await app.request(
        `${BASE}/v3/mail/send`,
        { method: "POST", headers: bearer(t.liveKey), body: JSON.stringify(mailBody(t.from)) },
        bindings,
        ctx,
      );
      expect(res.status).toBe(202);
      await waitOnExecutionContext(ctx);
    };
    await send();
    const before = {
      d1: trips.d1,
      hub: trips.durableObjects["ORIGIN_HUB"] ?? 0,
      rl: trips.durableObjects["RATE_LIMITER"] ?? 0,
    };
    const N = 20;
    for (let i = 0; i < N; i++) await send();
    const d1 = trips.d1 - before.d1;
    const hub = (trips.durableObjects["ORIGIN_HUB"] ?? 0) - before.hub;
    const limiter = (trips.durableObjects["RATE_LIMITER"] ?? 0) - before.rl;
    console.log(JSON.stringify({ sends: N, d1, hub, limiter }));
    expect(hub).toBe(N);
    expect(d1).toBe(0);
    // Leases of rate-limit tokens (edge/src/objects/rate-limiter.ts) are renewed now and then, not per
    // send; how often is that module's business (test/edge/rate-limit.leases.test.ts).
    expect(limiter).toBeLessThan(N);
  });
});
