/**
 * Counting (and optionally slowed) stand-ins for the Worker's storage bindings, for the edge tests and
 * the accept benchmark only: every D1 query or batch and every Durable Object call made through them
 * counts as one round trip, and may wait `delayMs` first (the latency model: a far region).
 * Runs inside workerd. The real binding does the work; only the call is observed, so what is measured
 * is exactly what the production code asks of its bindings.
 *
 * Typed structurally (no workers-types globals) so that both the workerd tests and the node-side bench
 * code can import it.
 */

export interface RoundTrips {
  d1: number;
  /** D1 queries that went through a session, by constraint ("first-unconstrained", "first-primary", or a bookmark). */
  d1Sessions: Record<string, number>;
  /** Durable Object calls by binding name, e.g. { RATE_LIMITER: 3, ORIGIN_HUB: 1 }. */
  durableObjects: Record<string, number>;
  /** SQL of every D1 call, in order (batches as their statements joined with " ; "); the first 10,000. */
  log: string[];
  /** Set by the bench's instrumented Worker: calls started while sends were being answered, and how many sends. */
  duringRequest?: number;
  requests?: number;
  handlerMs?: number;
}

export function newRoundTrips(): RoundTrips {
  return { d1: 0, d1Sessions: {}, durableObjects: {}, log: [] };
}

export function totalRoundTrips(r: RoundTrips): number {
  return r.d1 + Object.values(r.durableObjects).reduce((a, b) => a + b, 0);
}

/** A fixed delay, or a function read on every call (the bench changes it between phases). */
export type Delay = number | (() => number);
const sleep = (delay: Delay) => {
  const ms = typeof delay === "function" ? delay() : delay;
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
};

type AnyFn = (...args: unknown[]) => unknown;
const STATEMENT_RUNNERS = new Set(["first", "all", "run", "raw"]);

/** The real statements behind our proxies: the native batch() needs the originals. */
const realStatement = new WeakMap<object, { target: object; sql: string }>();

function wrapStatement(stmt: object, sql: string, onCall: (sql: string) => Promise<void>): object {
  const proxy: object = new Proxy(stmt, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === "bind") {
        return (...args: unknown[]) =>
          wrapStatement(Reflect.apply(value as AnyFn, target, args) as object, sql, onCall);
      }
      if (typeof prop === "string" && STATEMENT_RUNNERS.has(prop)) {
        return async (...args: unknown[]) => {
          await onCall(sql);
          return Reflect.apply(value as AnyFn, target, args);
        };
      }
      return typeof value === "function"
        ? (...args: unknown[]) => Reflect.apply(value as AnyFn, target, args)
        : value;
    },
  });
  realStatement.set(proxy, { target: stmt, sql });
  return proxy;
}

function wrapQueryable<T extends object>(
  inner: T,
  onCall: (sql: string) => Promise<void>,
  withSessions: (constraint: string, session: object) => object,
): T {
  return new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === "prepare") {
        return (sql: string) =>
          wrapStatement(Reflect.apply(value as AnyFn, target, [sql]) as object, sql, onCall);
      }
      if (prop === "batch") {
        return async (statements: object[]) => {
          const real = statements.map((s) => realStatement.get(s) ?? { target: s, sql: "?" });
          await onCall(real.map((r) => r.sql).join(" ; "));
          return (value as AnyFn).call(
            target,
            real.map((r) => r.target),
          );
        };
      }
      if (prop === "withSession") {
        return (constraint?: string) =>
          withSessions(
            constraint ?? "first-unconstrained",
            Reflect.apply(value as AnyFn, target, [constraint]) as object,
          );
      }
      return typeof value === "function"
        ? (...args: unknown[]) => Reflect.apply(value as AnyFn, target, args)
        : value;
    },
  });
}

/** A D1 binding that counts every query and batch (one round trip each), sessions included. */
export function countingD1<T extends object>(inner: T, trips: RoundTrips, delayMs: Delay = 0): T {
  const top = async (sql: string) => {
    trips.d1 += 1;
    if (trips.log.length < 10_000) trips.log.push(sql);
    await sleep(delayMs);
  };
  const sessions = (constraint: string, session: object): object =>
    wrapQueryable(
      session,
      async (sql) => {
        trips.d1Sessions[constraint] = (trips.d1Sessions[constraint] ?? 0) + 1;
        await top(sql);
      },
      sessions,
    );
  return wrapQueryable(inner, top, sessions);
}

/**
 * A Durable Object namespace whose stubs count every RPC method call and fetch (one round trip each).
 * `name` is the binding's name, used as the counter's key.
 */
export function countingNamespace<T extends object>(
  inner: T,
  name: string,
  trips: RoundTrips,
  delayMs: Delay = 0,
): T {
  const wrapStub = (stub: object): object =>
    new Proxy(stub, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (typeof value !== "function" || prop === "then" || typeof prop === "symbol") return value;
        return async (...args: unknown[]) => {
          trips.durableObjects[name] = (trips.durableObjects[name] ?? 0) + 1;
          await sleep(delayMs);
          return Reflect.apply(value as AnyFn, target, args);
        };
      },
    });
  return new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === "get" || prop === "getByName") {
        return (...args: unknown[]) => wrapStub(Reflect.apply(value as AnyFn, target, args) as object);
      }
      return typeof value === "function"
        ? (...args: unknown[]) => Reflect.apply(value as AnyFn, target, args)
        : value;
    },
  });
}
