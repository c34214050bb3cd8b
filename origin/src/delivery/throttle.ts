/**
 * The rules of the road per destination domain (docs/operations.md, "Throttling and warm-up"),
 * consulted by the engine before each SMTP transaction:
 *
 *   1. back-off: a destination that pushed back (421, or a 4xx for every recipient of a transaction)
 *      is paused for a while, longer each time it happens again soon, and afterwards gets fewer
 *      connections and a slower rate (halved per level) until the level decays, as Postfix suspends
 *      a "dead" destination and lowers its concurrency on negative feedback;
 *   2. connections: at most `concurrency` transactions to the domain at once across every node (a
 *      host-slot semaphore under `domainSlotKey`, beside the per-MX-host limit of the transport);
 *      a transaction waits for its slot as it would for a host slot (`slotWaitMs`);
 *   3. rate: a token bucket per domain (`rate` recipients per `intervalMs`, bursts up to `rate`),
 *      one token per recipient. A token due soon is waited for (up to `maxWaitMs`, and never past half
 *      of what is left before the job deadline); a later one defers the recipients with `retryAfterMs`,
 *      which the hub honours (docs/link-protocol.md).
 *
 * The counters live in the Coordinator, so several nodes on one Redis share them. Domains of one
 * mailbox provider share one bucket (googlemail.com counts as gmail.com): `destinationKey`.
 */
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import {
  domainSlotKey,
  HostSlotTimeoutError,
  type BackoffPolicy,
  type BackoffState,
  type Coordinator,
} from "../coord/index.ts";
import type { Metrics } from "../ops/metrics.ts";

export interface DestinationLimits {
  /** Recipients per `intervalMs`; null = no rate limit. */
  rate: number | null;
  intervalMs: number;
  /** Transactions in progress at once across nodes. */
  concurrency: number;
}

/**
 * Domains that are one mailbox provider's (same MX, same limits): the bucket is the first domain's.
 * Google: https://support.google.com/a/answer/81126; Microsoft consumer: https://sendersupport.olc.protection.outlook.com/pm/;
 * Yahoo and AOL share Yahoo's MX: https://senders.yahooinc.com/best-practices/; Apple iCloud: https://support.apple.com/en-us/102322.
 */
export const PROVIDER_DOMAINS: Record<string, readonly string[]> = {
  "gmail.com": ["gmail.com", "googlemail.com"],
  "outlook.com": ["outlook.com", "hotmail.com", "live.com", "msn.com", "hotmail.co.uk", "live.co.uk"],
  "yahoo.com": ["yahoo.com", "ymail.com", "rocketmail.com", "aol.com", "aim.com"],
  "icloud.com": ["icloud.com", "me.com", "mac.com"],
};

const GROUP_OF = new Map<string, string>(
  Object.entries(PROVIDER_DOMAINS).flatMap(([head, domains]) => domains.map((d) => [d, head] as const)),
);

/** The bucket a recipient domain counts against. */
export const destinationKey = (domain: string): string => {
  const d = domain.toLowerCase();
  return GROUP_OF.get(d) ?? d;
};

/**
 * Built-in starting points. The providers publish no fixed numbers; these are conservative rates
 * for a sender without a long reputation, and Postfix's default destination concurrency (20) for
 * everyone else. THROTTLE_RATES / THROTTLE_CONCURRENCY override them per domain.
 */
export const DEFAULT_RATES: Record<string, string> = {
  "gmail.com": "20/1s",
  "outlook.com": "10/1s",
  "yahoo.com": "10/1s",
  "icloud.com": "5/1s",
  "*": "none",
};
export const DEFAULT_CONCURRENCY: Record<string, number> = {
  "gmail.com": 20,
  "outlook.com": 10,
  "yahoo.com": 10,
  "icloud.com": 5,
  "*": 20,
};

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export class ThrottleConfigError extends Error {
  override name = "ThrottleConfigError";
}

/** "20/1s", "600/1m", "20/s" → rate and interval; "none" or "0" → no limit. */
export function parseRate(spec: string): { rate: number | null; intervalMs: number } {
  const v = spec.trim().toLowerCase();
  if (v === "none" || v === "0" || v === "unlimited") return { rate: null, intervalMs: 1_000 };
  const m = /^(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h|d)$/.exec(v);
  if (!m) throw new ThrottleConfigError(`invalid rate "${spec}": use N/interval, e.g. 20/1s or 600/1m`);
  const rate = Number(m[1]);
  const intervalMs = Number(m[2] ?? "1") * UNIT_MS[m[3]!]!;
  if (!(rate > 0) || !(intervalMs > 0)) throw new ThrottleConfigError(`invalid rate "${spec}"`);
  return { rate, intervalMs };
}

/** "a=x,b=y" → {a: x, b: y} with lower-case keys; throws on an entry without "=". */
export function parseDomainMap(spec: string | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of (spec ?? "").split(",")) {
    const entry = raw.trim();
    if (!entry) continue;
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new ThrottleConfigError(`invalid ${what} entry "${entry}": use domain=value`);
    out[entry.slice(0, eq).trim().toLowerCase()] = entry.slice(eq + 1).trim();
  }
  return out;
}

export interface ThrottlePolicy {
  /** Limits of a destination key (see `destinationKey`). */
  limitsFor(key: string): DestinationLimits;
  /** Whether `key` has limits of its own (built in or configured), for metric labels. */
  isNamed(key: string): boolean;
  backoff: BackoffPolicy;
  /**
   * Transactions in a row whose every recipient got a 4xx before that counts as pushback (a 421
   * always does). One such transaction is usually greylisting (RFC 6647), which the hub's retry
   * schedule already answers; several in a row mean the destination is refusing us for now.
   */
  pushbackAfter: number;
  /** Longest wait for a rate token or a connection slot before deferring. */
  maxWaitMs: number;
}

export interface ThrottlePolicyOptions {
  /** THROTTLE_RATES: "domain=N/interval,…", `*` for every other domain. */
  rates?: string;
  /** THROTTLE_CONCURRENCY: "domain=N,…", `*` for every other domain. */
  concurrency?: string;
  backoff?: Partial<BackoffPolicy>;
  /** THROTTLE_PUSHBACK_AFTER (default 3), see ThrottlePolicy.pushbackAfter. */
  pushbackAfter?: number;
  maxWaitMs?: number;
}

/** The policy from settings over the built-in defaults. Throws ThrottleConfigError on bad input. */
export function createThrottlePolicy(options: ThrottlePolicyOptions = {}): ThrottlePolicy {
  const rates = new Map<string, { rate: number | null; intervalMs: number }>();
  for (const [k, v] of Object.entries({ ...DEFAULT_RATES, ...parseDomainMap(options.rates, "rate") })) {
    rates.set(destinationKey(k), parseRate(v));
  }
  const concurrency = new Map<string, number>();
  const configured = { ...DEFAULT_CONCURRENCY };
  for (const [k, v] of Object.entries(parseDomainMap(options.concurrency, "concurrency"))) {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new ThrottleConfigError(`invalid concurrency "${k}=${v}"`);
    configured[k] = n;
  }
  for (const [k, v] of Object.entries(configured)) concurrency.set(destinationKey(k), v);
  const fallbackRate = rates.get("*") ?? { rate: null, intervalMs: 1_000 };
  const fallbackConcurrency = concurrency.get("*") ?? 20;
  return {
    limitsFor: (key) => ({
      ...(rates.get(key) ?? fallbackRate),
      concurrency: concurrency.get(key) ?? fallbackConcurrency,
    }),
    isNamed: (key) => key !== "*" && (rates.has(key) || concurrency.has(key)),
    backoff: {
      baseMs: options.backoff?.baseMs ?? 60_000,
      maxMs: options.backoff?.maxMs ?? 3_600_000,
      decayMs: options.backoff?.decayMs ?? 600_000,
    },
    pushbackAfter: options.pushbackAfter ?? 3,
    maxWaitMs: options.maxWaitMs ?? 30_000,
  };
}

export type ThrottleReason = "rate" | "backoff" | "concurrency" | "warmup";

export type Gate =
  { ok: true; key: string; release(): Promise<void> } | { ok: false; outcomes: RecipientOutcome[] };

export interface Throttle {
  /**
   * Before a transaction to `domain`: waits for its turn (within the limits above) and returns a gate
   * to release after the transaction, or the recipients' deferred outcomes when the turn is too far.
   */
  enter(domain: string, recipients: string[], deadlineAt?: number): Promise<Gate>;
  /** After the transaction: notes a pushback (421, or `pushbackAfter` all-4xx transactions in a row). */
  observe(domain: string, outcomes: RecipientOutcome[]): Promise<void>;
  /** Transactions this node has in progress per destination key. */
  connections(): Map<string, number>;
}

export interface ThrottleOptions {
  coordinator: Coordinator;
  policy?: ThrottlePolicy;
  /** Lease of one per-domain slot (as HOST_SLOT_TTL_MS). */
  slotTtlMs?: number;
  /**
   * Longest wait for a per-domain slot (as HOST_SLOT_WAIT_MS, default 120 s), never past half of what
   * is left before the job deadline: waiting for a slot is queueing for a busy destination, like the
   * wait for a host slot, so it is not cut at `maxWaitMs`.
   */
  slotWaitMs?: number;
  metrics?: Pick<Metrics, "destinationConnections" | "throttled">;
  log?: (level: "debug" | "info" | "warn", msg: string, fields?: Record<string, unknown>) => void;
}

const seconds = (ms: number) => `${Math.max(1, Math.ceil(ms / 1000))} s`;
const intervalText = (ms: number) =>
  ms % 3_600_000 === 0
    ? `${ms / 3_600_000}h`
    : ms % 60_000 === 0
      ? `${ms / 60_000}m`
      : ms % 1_000 === 0
        ? `${ms / 1_000}s`
        : `${ms}ms`;

/** How long a destination's back-off state is reused before the coordinator is asked again. */
const BACKOFF_CACHE_MS = 1_000;

/** A deferral's retry time is spread by up to this fraction, so throttled mail does not come back at once. */
const RETRY_SPREAD = 0.2;
/**
 * Upper bound of a `retryAfterMs` we send, well under the link schema's 31 days (a result frame
 * outside the schema would be dropped by the hub): a rate as slow as "1/30d" still gets retried.
 */
export const MAX_RETRY_AFTER_MS = 7 * 86_400_000;

/**
 * What a transaction's outcomes say about the destination: "421" (it closed on us: pushback at
 * once), "tempfail" (a 4xx for every recipient: pushback once it repeats, see
 * ThrottlePolicy.pushbackAfter), or null (it took or refused mail on its merits).
 */
export function pushbackKind(outcomes: RecipientOutcome[]): "421" | "tempfail" | null {
  if (outcomes.some((o) => o.status === "deferred" && o.smtpCode === 421)) return "421";
  const allTempfail =
    outcomes.length > 0 &&
    outcomes.every(
      (o) => o.status === "deferred" && o.smtpCode !== undefined && o.smtpCode >= 400 && o.smtpCode < 500,
    );
  return allTempfail ? "tempfail" : null;
}

/** Whether a transaction's outcomes are pushback-like at all (a 421, or a 4xx for every recipient). */
export function isPushback(outcomes: RecipientOutcome[]): boolean {
  return pushbackKind(outcomes) !== null;
}

/** Destinations whose run of all-4xx transactions is counted at once (per node; see `observe`). */
const MAX_TEMPFAIL_RUNS = 10_000;

export function createThrottle(options: ThrottleOptions): Throttle {
  const { coordinator } = options;
  const policy = options.policy ?? createThrottlePolicy();
  const slotTtlMs = options.slotTtlMs ?? 60_000;
  const slotWaitMs = options.slotWaitMs ?? 120_000;
  const log = options.log ?? (() => {});
  const active = new Map<string, number>();
  /** All-4xx transactions in a row per destination key, until pushbackAfter (see `observe`). */
  const tempfailRuns = new Map<string, number>();
  /** The last pushback reply per key, for the deferral text (a convenience: not shared across nodes). */
  const lastPushback = new Map<string, string>();
  /**
   * Back-off states read in the last BACKOFF_CACHE_MS, so a busy destination costs one coordinator
   * round trip per second for it, not one per transaction (a pushback another node saw shows here
   * up to that much later; one this node sees, at once).
   */
  const backoffCache = new Map<string, { state: BackoffState; at: number }>();
  async function backoffOf(key: string): Promise<BackoffState> {
    const t = Date.now();
    const hit = backoffCache.get(key);
    if (hit && t - hit.at < BACKOFF_CACHE_MS) {
      return { level: hit.state.level, pausedForMs: Math.max(0, hit.state.pausedForMs - (t - hit.at)) };
    }
    const state = await coordinator.backoffState(key, policy.backoff);
    if (backoffCache.size >= 10_000) backoffCache.clear();
    backoffCache.set(key, { state, at: t });
    return state;
  }

  const label = (key: string) => (policy.isNamed(key) ? key : "*");
  const setActive = (key: string, delta: number) => {
    const n = (active.get(key) ?? 0) + delta;
    if (n <= 0) active.delete(key);
    else active.set(key, n);
    if (n <= 0) options.metrics?.destinationConnections.delete({ destination: key });
    else options.metrics?.destinationConnections.set(n, { destination: key });
  };

  const defer = (
    key: string,
    reason: ThrottleReason,
    recipients: string[],
    response: string,
    started: number,
    retryAfterMs?: number,
  ): Gate => {
    options.metrics?.throttled.inc({ reason, destination: label(key) }, recipients.length);
    log("info", "recipients deferred by a destination limit", { destination: key, reason, response });
    return {
      ok: false,
      outcomes: recipients.map((recipient): RecipientOutcome => ({
        recipient,
        status: "deferred",
        response,
        ...(retryAfterMs !== undefined
          ? { retryAfterMs: Math.min(MAX_RETRY_AFTER_MS, Math.ceil(retryAfterMs)) }
          : {}),
        latencyMs: Date.now() - started,
      })),
    };
  };

  return {
    async enter(domain, recipients, deadlineAt) {
      const started = Date.now();
      const key = destinationKey(domain);
      const limits = policy.limitsFor(key);
      const budget = (cap = policy.maxWaitMs) =>
        Math.max(0, Math.min(cap, deadlineAt === undefined ? Infinity : (deadlineAt - Date.now()) / 2));

      const backoff = await backoffOf(key);
      if (backoff.pausedForMs > 0) {
        const why = lastPushback.get(key);
        return defer(
          key,
          "backoff",
          recipients,
          `${key} is pushing back${why ? ` (${why})` : ""}: backing off (level ${backoff.level}); retry after ${seconds(backoff.pausedForMs)}`,
          started,
          backoff.pausedForMs * (1 + Math.random() * RETRY_SPREAD),
        );
      }
      // Fewer connections and a slower rate while the level decays.
      const slowdown = 2 ** backoff.level;
      const concurrency = Math.max(1, Math.floor(limits.concurrency / slowdown));
      let release: () => Promise<void>;
      try {
        release = await coordinator.acquireHostSlot(domainSlotKey(key), concurrency, slotTtlMs, {
          waitMs: budget(slotWaitMs),
        });
      } catch (err) {
        const response =
          err instanceof HostSlotTimeoutError
            ? `connection limit for ${key}: ${concurrency} transactions in progress, none ended within ${seconds(err.waitedMs)}`
            : `connection limit for ${key} could not be checked: ${err instanceof Error ? err.message : String(err)}`;
        return defer(key, "concurrency", recipients, response, started);
      }
      setActive(key, 1);
      let released = false;
      const gate: Gate = {
        ok: true,
        key,
        async release() {
          if (released) return;
          released = true;
          setActive(key, -1);
          await release();
        },
      };
      if (limits.rate === null) return gate;

      const emissionMs = (limits.intervalMs / limits.rate) * slowdown;
      try {
        const decision = await coordinator.takeRateTokens(key, {
          cost: recipients.length,
          emissionMs,
          burst: Math.max(1, Math.floor(limits.rate / slowdown)),
          maxWaitMs: budget(),
        });
        if (decision.granted) {
          if (decision.waitMs > 0) await new Promise((r) => setTimeout(r, decision.waitMs));
          return gate;
        }
        await gate.release();
        const rateText = `${limits.rate} per ${intervalText(limits.intervalMs)}${slowdown > 1 ? `, slowed ${slowdown}× by back-off` : ""}`;
        return defer(
          key,
          "rate",
          recipients,
          `rate limit for ${key} (${rateText}): no token within ${seconds(budget())}; retry after ${seconds(decision.retryAfterMs)}`,
          started,
          decision.retryAfterMs * (1 + Math.random() * RETRY_SPREAD),
        );
      } catch (err) {
        await gate.release();
        return defer(
          key,
          "rate",
          recipients,
          `rate limit for ${key} could not be checked: ${err instanceof Error ? err.message : String(err)}`,
          started,
        );
      }
    },

    async observe(domain, outcomes) {
      const kind = pushbackKind(outcomes);
      const key = destinationKey(domain);
      if (kind === null) {
        tempfailRuns.delete(key);
        return;
      }
      if (kind === "tempfail") {
        // Counted per node: a run is consecutive transactions this process saw, which is what the
        // threshold is about (greylisting answers each new sender/recipient pair once).
        const run = (tempfailRuns.get(key) ?? 0) + 1;
        if (run < policy.pushbackAfter) {
          if (tempfailRuns.size >= MAX_TEMPFAIL_RUNS && !tempfailRuns.has(key)) tempfailRuns.clear();
          tempfailRuns.set(key, run);
          return;
        }
      }
      tempfailRuns.delete(key);
      const reply = outcomes.find((o) => o.smtpCode === 421) ?? outcomes[0]!;
      lastPushback.set(key, reply.response.slice(0, 200));
      try {
        const state = await coordinator.reportPushback(key, policy.backoff);
        backoffCache.set(key, { state, at: Date.now() });
        log("warn", "destination pushed back; backing off", {
          destination: key,
          level: state.level,
          pausedForMs: state.pausedForMs,
          response: reply.response,
        });
      } catch (err) {
        log("warn", "could not record a destination's pushback", { destination: key, error: String(err) });
      }
    },

    connections: () => new Map(active),
  };
}

/** One transaction's turn under the destination limits and the sender's warm-up allowance. */
export interface Turn {
  /** Recipients to hand to the transport now (none: every one is in `deferred`). */
  go: string[];
  /** Recipients the limits deferred, with their outcomes. */
  deferred: RecipientOutcome[];
  /** Frees the turn's connection slot; idempotent. */
  release(): Promise<void>;
  /** After the transaction: notes a pushback, frees the slot, and adds the deferred outcomes. */
  done(outcomes: RecipientOutcome[]): Promise<RecipientOutcome[]>;
}

export interface DeliveryLimits {
  /** `sourceAddress`: the IP pool address the transaction goes out from, which warm-up counts against. */
  enter(
    domain: string,
    recipients: string[],
    senderDomain: string | null,
    deadlineAt?: number,
    sourceAddress?: string,
  ): Promise<Turn>;
}

/**
 * The engine's one call before the transport: the destination's turn first (back-off, connections,
 * rate), then the sender's warm-up allowance, so mail that waits for a token is not counted early.
 */
export function createDeliveryLimits(parts: {
  throttle?: Throttle;
  warmup?: {
    take(
      senderDomain: string,
      recipients: string[],
      sourceAddress?: string,
    ): Promise<{ go: string[]; deferred: RecipientOutcome[] }>;
  };
}): DeliveryLimits {
  return {
    async enter(domain, recipients, senderDomain, deadlineAt, sourceAddress) {
      const gate = parts.throttle ? await parts.throttle.enter(domain, recipients, deadlineAt) : null;
      if (gate && !gate.ok) return idleTurn([], gate.outcomes);
      const release = gate?.ok ? gate.release : async () => {};
      let go = recipients;
      let deferred: RecipientOutcome[] = [];
      if (parts.warmup && senderDomain) {
        try {
          ({ go, deferred } = await parts.warmup.take(senderDomain, recipients, sourceAddress));
        } catch (err) {
          await release();
          throw err;
        }
      }
      if (go.length === 0) {
        await release();
        return idleTurn([], deferred);
      }
      return {
        go,
        deferred,
        release,
        async done(outcomes) {
          try {
            await parts.throttle?.observe(domain, outcomes);
          } finally {
            await release();
          }
          return [...outcomes, ...deferred];
        },
      };
    },
  };
}

function idleTurn(go: string[], deferred: RecipientOutcome[]): Turn {
  return { go, deferred, release: async () => {}, done: async (outcomes) => [...outcomes, ...deferred] };
}
