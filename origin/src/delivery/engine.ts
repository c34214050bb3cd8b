/**
 * DeliveryJob in, one outcome per recipient out (Postal's SendResult idea): `deliver` never
 * throws, whatever fails becomes outcomes the edge can record and retry.
 *
 * Steps, each ending the job early with outcomes when it fails:
 *   1. build the MIME message and DKIM-sign it, once per job (every domain gets the same bytes), in
 *      the compose pool's worker threads (compose/pool.ts), so this thread never waits on it;
 *   2. group recipients by domain: one SMTP transaction per domain, all in parallel;
 *   3. per domain: resolve MX (or use the smarthost) and, beside it, the domain's MTA-STS policy
 *      (smtp/mta-sts.ts; not for the smarthost, the operator's own relay), hand the message and
 *      the policy to the transport, which applies it (smtp/transport.ts).
 *
 * IP pools (smtp/source-address.ts): a job's `ipPool` (else the node's default pool) picks the source
 * address of each domain's transaction, after the MX look-up (the first MX address's family decides)
 * and before the limits, so warm-up counts against the address the mail really leaves from. A job
 * naming a pool this node lacks is deferred whole, before anything is built (`retryAfterMs`
 * POOL_MISSING_RETRY_MS, which costs no retry step at the hub), so a node that has the pool takes it:
 * it is never sent from another address.
 *
 * Job deadline (`deliver(job, { deadlineAt })`, absolute Unix ms): the caller sets it shorter than
 * the hub's lease on the job (docs/architecture.md: deadline < lease < claim), so a slow job is never
 * dispatched again while this run still works on it. The MX look-up is cut short at the deadline,
 * the transport caps slot waits and timeouts and closes the session at it; a recipient nothing
 * was decided for by then comes back `deferred` with "job deadline reached before …".
 */
import type { DeliveryJob, RecipientOutcome } from "../../../shared/link/protocol.ts";
import { createComposePool } from "../compose/pool.ts";
import type { TrackedJob, TrackingContext } from "../compose/tracking.ts";
import { createMtaStsResolver } from "../smtp/mta-sts.ts";
import { createMxResolver, type MxHost } from "../smtp/mx.ts";
import { familyOf, type SourceAddresses, type SourceChoice } from "../smtp/source-address.ts";
import {
  createSmtpTransport,
  type SmtpTransportOptions,
  type TlsPolicy,
  type TransportLog,
  type TransportStats,
} from "../smtp/transport.ts";
import { classifyError } from "./classify.ts";
import type { DeliveryLimits, Turn } from "./throttle.ts";
import { encodeVerp } from "./verp.ts";

/** The transport's options (EHLO name, timeouts, per-host limits, coordinator, log) plus routing and VERP. */
export interface DeliveryEngineOptions extends SmtpTransportOptions {
  /** Port of recipients' MX servers: 25 in production, an ephemeral port in tests. */
  smtpPort: number;
  /** Deliver everything to this host instead of MX (dev mode's local inbox). */
  smarthost?: { host: string; port: number };
  /** DNS servers as "ip" or "ip:port"; the system resolver when absent. */
  dnsServers?: string[];
  /** Domain of the VERP return path; defaults to the DKIM domain, else the From domain. */
  returnPathDomain?: string;
  /** HMAC key for VERP addresses; the inbound bounce server must use the same one. */
  verpSecret: string;
  /** Upper bound for caching MX look-ups. */
  mxCacheTtlMs?: number;
  /**
   * Let MX answers point at loopback/private/link-local addresses (ALLOW_PRIVATE_MX). Off by default
   * (smtp/address-policy.ts); the smarthost is the operator's own choice and is never checked.
   */
  allowPrivateMx?: boolean;
  /**
   * Worker threads that build and sign messages (COMPOSE_THREADS); 0 or absent composes on this
   * thread. The engine owns the pool and drains it in close().
   */
  composeThreads?: number;
  /** DKIM_FAST_PATH (default true); false signs with mailauth's dkimSign only (compose/dkim.ts). */
  dkimFastPath?: boolean;
  /** The tracking key and public URL the edge's welcome gave (compose/tracking.ts); none: no tracking. */
  tracking?: () => TrackingContext | undefined;
  /**
   * Per-destination rate, connection limit and back-off, and the senders' warm-up allowance
   * (delivery/throttle.ts, delivery/warmup.ts); none when absent. Checked after the MX look-up.
   */
  limits?: DeliveryLimits;
  /**
   * Look up and apply recipient domains' MTA-STS policies (MTA_STS, default true). The policy host
   * is screened like MX addresses (allowPrivateMx); `tlsCa` is trusted for its certificate too.
   */
  mtaSts?: boolean;
  /** Port of MTA-STS policy hosts: 443; tests use their own HTTPS server's. */
  mtaStsPort?: number;
  /** How long a domain's MTA-STS TXT answer is reused before DNS is asked again; default mxCacheTtlMs. */
  mtaStsRecheckMs?: number;
  /** Time limit of one policy fetch (default 20 s). */
  mtaStsFetchTimeoutMs?: number;
  /** The node's IP pools (IP_POOLS); absent = no pools, the system picks every source address. */
  sourceAddresses?: SourceAddresses;
  /** Counts jobs deferred for naming a pool this node lacks (/metrics). */
  onPoolMissing?: (pool: string) => void;
}

/**
 * When a job for a pool this node lacks is due again: soon, for a node that has the pool, but not at
 * once, so the hub does not hand it straight back (docs/link-protocol.md#ip-pools).
 */
export const POOL_MISSING_RETRY_MS = 30_000;

export interface DeliverOptions {
  /** Absolute Unix-ms time by which every outcome is decided; undecided recipients are deferred. */
  deadlineAt?: number;
  /**
   * Called with each SMTP transaction's outcomes as soon as the server's last reply is parsed
   * (smtp/transport.ts `onOutcome`), before the slot release, the throttle's bookkeeping and the
   * other domains of the job: the job runner journals delivered recipients here.
   */
  onOutcome?: (outcomes: RecipientOutcome[]) => void;
  /**
   * Called when the job reaches a stage of the message lifecycle (docs/api/sendgrid.md#message-statuses):
   * `rendered` once its MIME is built and signed, `sending` when SMTP delivery to its domains starts.
   */
  onStage?: (stage: "rendered" | "sending") => void;
}

export interface DeliveryEngine {
  deliver(job: DeliveryJob, opts?: DeliverOptions): Promise<RecipientOutcome[]>;
  /** The transport's connection counters (open, idle), for /metrics and tests. */
  stats(): TransportStats;
  close(): Promise<void>;
}

const domainOf = (address: string): string | null => {
  const at = address.lastIndexOf("@");
  return at > 0 && at < address.length - 1 ? address.slice(at + 1).toLowerCase() : null;
};

export function createDeliveryEngine(options: DeliveryEngineOptions): DeliveryEngine {
  const mx = createMxResolver({
    ...(options.dnsServers ? { servers: options.dnsServers } : {}),
    ...(options.mxCacheTtlMs !== undefined ? { maxCacheTtlMs: options.mxCacheTtlMs } : {}),
    allowPrivate: options.allowPrivateMx ?? false,
  });
  const transport = createSmtpTransport(options);
  const log: TransportLog = options.log ?? (() => {});
  const mtaSts =
    options.mtaSts === false || options.smarthost
      ? null
      : createMtaStsResolver({
          ...(options.dnsServers ? { servers: options.dnsServers } : {}),
          allowPrivate: options.allowPrivateMx ?? false,
          ...(options.tlsCa ? { ca: options.tlsCa } : {}),
          ...(options.mtaStsPort !== undefined ? { port: options.mtaStsPort } : {}),
          ...(options.mtaStsFetchTimeoutMs !== undefined
            ? { fetchTimeoutMs: options.mtaStsFetchTimeoutMs }
            : {}),
          recheckMs: options.mtaStsRecheckMs ?? options.mxCacheTtlMs ?? 300_000,
          log,
        });
  const composer = createComposePool({
    threads: options.composeThreads ?? 0,
    prestart: true,
    ...(options.dkimFastPath === false ? { dkimFastPath: false } : {}),
    log,
  });

  let closing = false;
  const allFailed = (
    recipients: string[],
    err: unknown,
    status: RecipientOutcome["status"],
  ): RecipientOutcome[] =>
    recipients.map((recipient) => ({
      recipient,
      status,
      response: err instanceof Error ? err.message : String(err),
    }));

  async function prepare(job: DeliveryJob): Promise<{ raw: Buffer; envelopeFrom: string }> {
    const tracking = options.tracking?.();
    const tracked: TrackedJob = tracking ? { ...job, trackingContext: tracking } : job;
    const composed = await composer.compose(tracked);
    if (!composed.ok) throw new Error(composed.error);
    const { raw } = composed;
    const returnPathDomain = options.returnPathDomain ?? job.dkim?.domain ?? domainOf(job.message.from.email);
    if (!returnPathDomain) throw new Error(`no return-path domain for sender ${job.message.from.email}`);
    return {
      raw,
      envelopeFrom: encodeVerp(job.messageId, { secret: options.verpSecret, domain: returnPathDomain }),
    };
  }

  /**
   * The hosts to try and the domain's MTA-STS policy (enforce/testing only), or which look-up was
   * still running when the deadline came. An MX failure throws (classified by the caller) whatever the
   * policy says; a policy look-up never fails (no live policy = none, smtp/mta-sts.ts).
   */
  async function hostsFor(
    domain: string,
    deadlineAt: number | undefined,
  ): Promise<{ hosts: MxHost[]; port: number; tlsPolicy?: TlsPolicy } | { waitingFor: string }> {
    if (options.smarthost) {
      const { host, port } = options.smarthost;
      return { hosts: [{ exchange: host, preference: 0, addresses: [host] }], port };
    }
    let mxDone = false;
    const mxLookup = mx.resolve(domain).then((hosts) => {
      mxDone = true;
      return hosts;
    });
    const lookup = Promise.all([mxLookup, mtaSts ? mtaSts.policyFor(domain) : null]).then(
      ([hosts, policy]) => ({
        hosts,
        port: options.smtpPort,
        ...(policy && policy.mode !== "none"
          ? { tlsPolicy: { domain: policy.domain, mode: policy.mode, mx: policy.mx } }
          : {}),
      }),
    );
    if (deadlineAt === undefined) return await lookup;
    // The look-ups have no side effects: at the deadline we stop waiting, and they end by their own
    // timeouts (or at close()); a policy fetched late is cached for the next attempt.
    lookup.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<{ waitingFor: string }>((resolve) => {
      timer = setTimeout(
        () => resolve({ waitingFor: mxDone ? "MTA-STS policy look-up" : "MX look-up" }),
        Math.max(0, deadlineAt - Date.now()),
      );
    });
    try {
      return await Promise.race([lookup, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function deliverToDomain(
    domain: string,
    recipients: string[],
    raw: Buffer,
    envelopeFrom: string,
    deadlineAt: number | undefined,
    senderDomain: string | null = null,
    onOutcome?: (outcomes: RecipientOutcome[]) => void,
    pool: string | null = null,
  ) {
    const started = Date.now();
    let turn: Turn | undefined;
    let source: SourceChoice | null = null;
    try {
      const route = await hostsFor(domain, deadlineAt);
      if ("waitingFor" in route) {
        return recipients.map((recipient): RecipientOutcome => ({
          recipient,
          status: "deferred",
          response: `job deadline reached before the ${route.waitingFor} for ${domain} finished`,
          latencyMs: Date.now() - started,
        }));
      }
      const { hosts, port } = route;
      if (pool !== null && options.sourceAddresses) {
        // The family of the first MX address to be tried decides which of the pool's addresses counts.
        const first = hosts[0]?.addresses[0];
        source = options.sourceAddresses.acquire(pool, first === undefined ? 0 : familyOf(first));
      }
      if (options.limits) {
        turn = await options.limits.enter(
          domain,
          recipients,
          senderDomain,
          deadlineAt,
          source?.primary.address,
        );
        if (turn.go.length === 0) return turn.deferred;
        recipients = turn.go;
      }
      const outcomes = await transport.deliver({
        hosts,
        port,
        ...(route.tlsPolicy ? { tlsPolicy: route.tlsPolicy } : {}),
        envelopeFrom,
        recipients,
        raw,
        ...(deadlineAt !== undefined ? { deadlineAt } : {}),
        ...(onOutcome ? { onOutcome } : {}),
        ...(source ? { source: source.byFamily } : {}),
      });
      return turn ? await turn.done(outcomes) : outcomes;
    } catch (err) {
      // MX failures (null MX, NXDOMAIN, SERVFAIL) land here; the transport itself does not throw.
      const verdict = classifyError(err);
      const failed = recipients.map((recipient): RecipientOutcome => ({
        recipient,
        ...verdict,
        latencyMs: Date.now() - started,
      }));
      return [...failed, ...(turn?.deferred ?? [])];
    } finally {
      source?.release();
      await turn?.release();
    }
  }

  return {
    async deliver(job, opts = {}) {
      // A job that reaches a closed engine (a node draining) is not the message's fault: it goes back
      // to the hub's schedule, never `failed` for "the compose pool is closed".
      if (closing)
        return allFailed(job.recipients, new Error("the delivery node is shutting down"), "deferred");
      const pool = options.sourceAddresses?.lookup(job.ipPool) ?? { kind: "none" as const };
      if (job.ipPool !== undefined && pool.kind !== "pool") {
        // Never from another address than the pool's: back to the hub for a node that has it.
        log("warn", "job names an IP pool this node does not have; deferred for another node", {
          jobId: job.jobId,
          ipPool: job.ipPool,
          pools: options.sourceAddresses?.names ?? [],
        });
        options.onPoolMissing?.(job.ipPool);
        return job.recipients.map((recipient) => ({
          recipient,
          status: "deferred",
          response: `IP pool "${job.ipPool}" is not configured on this delivery node`,
          retryAfterMs: POOL_MISSING_RETRY_MS,
        }));
      }
      let prepared: { raw: Buffer; envelopeFrom: string };
      try {
        prepared = await prepare(job);
      } catch (err) {
        // A message we cannot build or sign will not get better by retrying it: "failed".
        log("warn", "cannot prepare message", {
          jobId: job.jobId,
          error: err instanceof Error ? err.message : String(err),
        });
        return allFailed(job.recipients, err, "failed");
      }
      opts.onStage?.("rendered");

      const byDomain = new Map<string, string[]>();
      const invalid: RecipientOutcome[] = [];
      for (const recipient of new Set(job.recipients)) {
        const domain = domainOf(recipient);
        if (!domain) {
          invalid.push({
            recipient,
            status: "bounced",
            bounceType: "hard",
            enhancedCode: "5.1.3",
            response: "recipient address has no domain",
          });
          continue;
        }
        byDomain.set(domain, [...(byDomain.get(domain) ?? []), recipient]);
      }

      if (byDomain.size > 0) opts.onStage?.("sending");
      const perDomain = await Promise.all(
        [...byDomain].map(([domain, recipients]) =>
          deliverToDomain(
            domain,
            recipients,
            prepared.raw,
            prepared.envelopeFrom,
            opts.deadlineAt,
            domainOf(job.message.from.email),
            opts.onOutcome,
            pool.kind === "pool" ? pool.pool : null,
          ),
        ),
      );
      const byRecipient = new Map<string, RecipientOutcome>();
      for (const outcome of [...invalid, ...perDomain.flat()]) byRecipient.set(outcome.recipient, outcome);
      // Same order and length as job.recipients; a duplicate address shares its one outcome.
      return job.recipients.map(
        (recipient) =>
          byRecipient.get(recipient) ?? { recipient, status: "deferred", response: "no outcome recorded" },
      );
    },
    stats: () => transport.stats(),
    async close() {
      closing = true;
      // Deliveries still running have their message already; the pool finishes what it holds.
      await composer.close();
      await transport.close();
      mx.close();
      mtaSts?.close();
    },
  };
}
