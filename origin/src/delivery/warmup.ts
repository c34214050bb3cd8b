/**
 * Warm-up (docs/operations.md, "Throttling and warm-up"): a new sending domain or IP sends a small
 * daily volume that grows day by day, because mailbox providers judge a sender they do not know by
 * how its volume starts (https://support.google.com/a/answer/14229414, "IP warm-up" in
 * https://senders.yahooinc.com/best-practices/). Mail over today's allowance is deferred until the
 * next UTC day (never bounced); the hub retries it then (`retryAfterMs`, docs/link-protocol.md).
 *
 *  - WARMUP_SCHEDULE: recipients allowed on day 1, day 2, … ("50,100,250,500*2,1000"); past its end
 *    the warm-up is over and nothing is counted. Empty = off.
 *  - WARMUP_START: "<sending domain>=YYYY-MM-DD" per domain being warmed up, "<source address>=YYYY-MM-DD"
 *    per address of an IP pool (smtp/source-address.ts), and `*=YYYY-MM-DD` for every other source
 *    address: each address of a pool on its own counter, shared by every node on the same Redis (the
 *    address is what the mailbox provider sees), and a node without pools, whose address the system
 *    picks, on one counter per NODE_ID. A message counts against its sender domain's entry when it
 *    has one, else against its source address's own, else against `*`; with none it is not limited.
 *
 * Counts are recipients handed to a destination (an attempt, as the providers see it), kept per key
 * and UTC day in the Coordinator, so every node on one Redis shares a domain's allowance.
 */
import { isIP } from "node:net";
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import type { Coordinator } from "../coord/index.ts";
import type { Metrics } from "../ops/metrics.ts";

const DAY_MS = 86_400_000;

export class WarmupConfigError extends Error {
  override name = "WarmupConfigError";
}

/** "50,100,200*3" → [50, 100, 200, 200, 200]. */
export function parseWarmupSchedule(spec: string | undefined): number[] {
  const out: number[] = [];
  for (const raw of (spec ?? "").split(",")) {
    const entry = raw.trim();
    if (!entry) continue;
    const m = /^(\d+)\s*(?:\*\s*(\d+))?$/.exec(entry);
    if (!m) throw new WarmupConfigError(`invalid warm-up schedule entry "${entry}": use N or N*days`);
    const times = m[2] === undefined ? 1 : Number(m[2]);
    if (times < 1 || out.length + times > 3_650)
      throw new WarmupConfigError(`invalid repeat in warm-up schedule entry "${entry}"`);
    for (let i = 0; i < times; i++) out.push(Number(m[1]));
  }
  return out;
}

/** "example.com=2026-12-01,*=2026-11-20" → key → start of that UTC day (ms). */
export function parseWarmupStart(spec: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const raw of (spec ?? "").split(",")) {
    const entry = raw.trim();
    if (!entry) continue;
    const m = /^([^=\s]+)\s*=\s*(\d{4}-\d{2}-\d{2})$/.exec(entry);
    const at = m ? Date.parse(`${m[2]}T00:00:00Z`) : NaN;
    if (!m || Number.isNaN(at))
      throw new WarmupConfigError(`invalid warm-up start "${entry}": use domain=YYYY-MM-DD or *=YYYY-MM-DD`);
    const key = m[1]!.toLowerCase();
    // An IPv6 address in its canonical form, the one source addresses are compared in.
    out.set(isIP(key) === 6 ? new URL(`http://[${key}]`).hostname.slice(1, -1) : key, at);
  }
  return out;
}

export interface WarmupOptions {
  coordinator: Coordinator;
  schedule: number[];
  starts: Map<string, number>;
  /** Names the `*` counter of mail sent without a pool address: the node's own source address. */
  nodeId: string;
  /** The addresses of the node's IP pools, for the allowance gauges of `*` (one per address). */
  sourceAddresses?: readonly string[];
  /** Deferred mail comes back spread over this long after midnight (UTC), not all at once. */
  spreadMs?: number;
  metrics?: Pick<Metrics, "warmupAllowance" | "warmupRemaining" | "throttled">;
  now?: () => number;
}

export interface WarmupTake {
  /** Recipients that may be handed to the destination now. */
  go: string[];
  /** The others, deferred until the next day. */
  deferred: RecipientOutcome[];
}

export interface Warmup {
  readonly enabled: boolean;
  /**
   * Counts `recipients` of a message from `senderDomain` against today's allowance; `sourceAddress`
   * is the pool address the transaction will be sent from, when it has one.
   */
  take(senderDomain: string, recipients: string[], sourceAddress?: string): Promise<WarmupTake>;
  /**
   * Reads today's count of every configured sender (counting nothing) into the allowance gauges, so
   * /metrics shows what every node on the same Redis has sent, not only this node's last count.
   */
  refreshMetrics(): Promise<void>;
}

export function createWarmup(options: WarmupOptions): Warmup {
  const now = options.now ?? Date.now;
  const spreadMs = options.spreadMs ?? 600_000;
  const enabled = options.schedule.length > 0 && options.starts.size > 0;

  /**
   * The counter of a WARMUP_START entry: a sending domain's or a source address's (both shared), or
   * `*`: the source address's when there is one, else this node's own.
   */
  const counterOf = (name: string, start: number, sourceAddress?: string) => {
    if (name !== "*") return { key: `${isIP(name) ? "ip" : "domain"}:${name}`, label: name, start };
    return sourceAddress !== undefined
      ? { key: `ip:${sourceAddress}`, label: sourceAddress, start }
      : { key: `node:${options.nodeId}`, label: "*", start };
  };

  function counterFor(
    senderDomain: string,
    sourceAddress: string | undefined,
  ): { key: string; label: string; start: number } | null {
    const domain = senderDomain.toLowerCase();
    const own = domain === "*" ? undefined : options.starts.get(domain);
    if (own !== undefined) return counterOf(domain, own);
    const address = sourceAddress === undefined ? undefined : options.starts.get(sourceAddress);
    if (address !== undefined) return counterOf(sourceAddress!, address);
    const node = options.starts.get("*");
    return node === undefined ? null : counterOf("*", node, sourceAddress);
  }

  /** Today's allowance of a counter (undefined once its schedule is over) and the day's name. */
  function today(start: number, t: number): { allowance: number | undefined; day: string; dayIndex: number } {
    const midnight = Math.floor(t / DAY_MS) * DAY_MS;
    const dayIndex = Math.max(0, Math.floor((midnight - start) / DAY_MS));
    return {
      allowance: options.schedule[dayIndex],
      day: new Date(midnight).toISOString().slice(0, 10),
      dayIndex,
    };
  }

  return {
    enabled,
    async refreshMetrics() {
      if (!enabled || !options.metrics) return;
      const t = now();
      const counters = [...options.starts].map(([name, start]) => counterOf(name, start));
      // `*` of a node with pools: one counter per pool address without an entry of its own.
      const all = options.starts.get("*");
      if (all !== undefined)
        for (const address of options.sourceAddresses ?? [])
          if (!options.starts.has(address)) counters.push(counterOf("*", all, address));
      for (const counter of counters) {
        const { allowance, day } = today(counter.start, t);
        if (allowance === undefined) {
          options.metrics.warmupAllowance.delete({ sender: counter.label });
          options.metrics.warmupRemaining.delete({ sender: counter.label });
          continue;
        }
        const { used } = await options.coordinator.takeWarmup(counter.key, day, 0, allowance);
        options.metrics.warmupAllowance.set(allowance, { sender: counter.label });
        options.metrics.warmupRemaining.set(Math.max(0, allowance - used), { sender: counter.label });
      }
    },
    async take(senderDomain, recipients, sourceAddress) {
      const all = { go: recipients, deferred: [] };
      if (!enabled) return all;
      const counter = counterFor(senderDomain, sourceAddress);
      if (!counter) return all;
      const t = now();
      const { allowance, day, dayIndex } = today(counter.start, t);
      if (allowance === undefined) return all; // the schedule is over: warmed up
      const { granted, used } = await options.coordinator.takeWarmup(
        counter.key,
        day,
        recipients.length,
        allowance,
      );
      options.metrics?.warmupAllowance.set(allowance, { sender: counter.label });
      options.metrics?.warmupRemaining.set(Math.max(0, allowance - used), { sender: counter.label });
      if (granted >= recipients.length) return all;
      const tomorrow = Math.floor(t / DAY_MS) * DAY_MS + DAY_MS;
      const retryAfterMs = tomorrow - t + Math.floor(Math.random() * spreadMs);
      const waiting = recipients.slice(granted);
      options.metrics?.throttled.inc({ reason: "warmup", destination: "*" }, waiting.length);
      const response =
        `warm-up allowance for ${counter.label === "*" ? "this node" : counter.label} reached: ` +
        `${used} of ${allowance} recipients today (day ${dayIndex + 1} of ${options.schedule.length}); ` +
        `retry after ${new Date(tomorrow).toISOString().replace(".000", "")}`;
      return {
        go: recipients.slice(0, granted),
        deferred: waiting.map((recipient) => ({ recipient, status: "deferred", response, retryAfterMs })),
      };
    },
  };
}
