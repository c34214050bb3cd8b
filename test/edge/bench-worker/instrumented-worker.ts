/**
 * The edge Worker with its storage bindings observed, for the accept benchmark only (never deployed;
 * it lives under test/edge/ to be type-checked with the Workers types):
 * the real entry point (edge/src/index.ts) runs unchanged, but receives D1, ORIGIN_HUB and
 * RATE_LIMITER wrapped by counting-bindings.ts, so every D1 query/batch and Durable Object call made
 * while serving a request is counted, and can be delayed to model a far region.
 *   GET  /__bench/trips        → the counters so far (RoundTrips)
 *   POST /__bench/reset        → zero the counters
 *   POST /__bench/delay?ms=N[&only=ORIGIN_HUB,…] → wait N ms before every D1 and Durable Object call
 *                                (or only those of the named bindings) from now on
 */
import worker, { OriginHub, RateLimiter, WebhookQueue } from "../../../edge/src/index.ts";
import type { Bindings } from "../../../edge/src/env.ts";
import {
  countingD1,
  countingNamespace,
  newRoundTrips,
  totalRoundTrips,
  type RoundTrips,
} from "../../bench/lib/counting-bindings.ts";

export { OriginHub, RateLimiter, WebhookQueue };

let trips: RoundTrips = newRoundTrips();
let delayMs = 0;
/** Which bindings the delay applies to ("DB", "ORIGIN_HUB", "RATE_LIMITER"); all by default. */
let delayOnly: string[] = [];
const delayFor = (binding: string) => () =>
  delayOnly.length === 0 || delayOnly.includes(binding) ? delayMs : 0;
// One wrapped env per real env object, so the Worker's per-env caches (parsed config) keep working.
const wrapped = new WeakMap<object, Bindings>();

function instrument(env: Bindings): Bindings {
  let w = wrapped.get(env);
  if (!w) {
    const counters = {
      get d1() {
        return trips;
      },
    };
    // The wrappers read `trips` through this indirection so a reset replaces the counters for all.
    const live = new Proxy({} as RoundTrips, {
      get: (_t, p) => Reflect.get(counters.d1, p),
      set: (_t, p, v) => Reflect.set(counters.d1, p, v),
    });
    w = {
      ...env,
      DB: countingD1(env.DB, live, delayFor("DB")),
      ORIGIN_HUB: countingNamespace(env.ORIGIN_HUB, "ORIGIN_HUB", live, delayFor("ORIGIN_HUB")),
      RATE_LIMITER: countingNamespace(env.RATE_LIMITER, "RATE_LIMITER", live, delayFor("RATE_LIMITER")),
    } as Bindings;
    wrapped.set(env, w);
  }
  return w;
}

export default {
  async fetch(request: Request, env: Bindings, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/__bench/trips") return Response.json(trips);
    if (url.pathname === "/__bench/reset") {
      trips = newRoundTrips();
      return Response.json({ ok: true });
    }
    if (url.pathname === "/__bench/delay") {
      delayMs = Number(url.searchParams.get("ms") ?? "0");
      delayOnly = (url.searchParams.get("only") ?? "").split(",").filter(Boolean);
      return Response.json({ delayMs });
    }
    // Calls started between the request's arrival and its answer: at most what it waited for
    // (background work it or an earlier request started counts too; the bench sends one at a time).
    const before = totalRoundTrips(trips);
    const counters = trips;
    const t0 = Date.now();
    const response = await worker.fetch(request, instrument(env), ctx);
    if (url.pathname === "/v3/mail/send" && counters === trips) {
      trips.duringRequest = (trips.duringRequest ?? 0) + totalRoundTrips(trips) - before;
      trips.requests = (trips.requests ?? 0) + 1;
      trips.handlerMs = (trips.handlerMs ?? 0) + Date.now() - t0;
    }
    return response;
  },
  scheduled: worker.scheduled,
} satisfies ExportedHandler<Bindings>;
