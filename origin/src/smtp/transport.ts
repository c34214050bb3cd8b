/**
 * One SMTP transaction per destination domain, over nodemailer's SMTPConnection (used directly,
 * not through createTransport, for per-RCPT replies and the STARTTLS state of the session).
 *
 * Order of hosts (RFC 5321 §5.1): MX hosts as given, each host's addresses in turn. We move on to
 * the next address/host when nothing useful was said about the recipients: connection refused or
 * timed out, a TLS failure, a 4xx/5xx greeting or EHLO, 421. Once the server has answered the
 * envelope, its verdict is final for this attempt: a 5xx to RCPT bounces, a 4xx defers (the edge
 * retries later, which also covers greylisting).
 *
 * TLS is opportunistic (RFC 3207 + RFC 7435): STARTTLS whenever offered, certificates not
 * verified (MX certificates rarely match and MTA-STS/DANE are out of scope); if the handshake
 * itself fails the same address is retried once in plaintext, as Postfix does.
 *
 * Job deadline (`DeliverParams.deadlineAt`, see docs/architecture.md for how it relates to the
 * hub's lease and the node's claim: deadline < lease < claim). Nothing here runs past it:
 *  - waiting for a host slot is capped by the time left;
 *  - connect and greeting timeouts are capped by the time left;
 *  - a timer closes the session at the deadline whatever the server is doing (socketTimeout only
 *    bounds inactivity: a server trickling one byte a minute would otherwise hold us for ever).
 * At the deadline a recipient the server already decided (accepted after DATA, refused or deferred
 * at RCPT) keeps that outcome; every other one is `deferred` with "job deadline reached before …".
 * The slot is released and the session closed (never put back idle) on the way out.
 *
 * Sessions are reused: after a successful transaction the connection goes back to an idle list per
 * address (at most `maxConnectionsPerHost` idle per address, MAX_IDLE_SESSIONS in all, each closed
 * after IDLE_MS or MAX_MESSAGES_PER_SESSION messages), so a busy destination costs one TCP + EHLO +
 * STARTTLS per many messages, as in nodemailer's pool and Postfix's connection cache. A reused
 * session that turns out to be dead before the server said anything about the envelope is replaced
 * by a fresh one, once.
 *
 * Invariants:
 *  - `deliver` never throws; every recipient comes back with an outcome;
 *  - an idle session is in exactly one list of `idle`, has one timer, and an address key exists only
 *    while its list is non-empty: expiry, eviction, the server closing it, and `close()` all go
 *    through `dropIdle`, so `stats()` reads zero once every session has gone.
 */
import SMTPConnection from "nodemailer/lib/smtp-connection/index.js";
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import { classifyError, classifyReply, type Classification } from "../delivery/classify.ts";
import { createMemoryCoordinator, type Coordinator } from "../coord/index.ts";
import type { MxHost } from "./mx.ts";

export interface SmtpTransportOptions {
  /** EHLO name; must resolve back to the sending IP at real receivers. */
  heloName: string;
  connectTimeoutMs: number;
  greetingTimeoutMs?: number;
  /** Inactivity limit once connected. RFC 5321 §4.5.3.2 allows minutes; we are less patient. */
  socketTimeoutMs?: number;
  /** Simultaneous connections to one MX host (by name); more wait their turn. */
  maxConnectionsPerHost: number;
  /**
   * Where the per-host limit is kept: shared across nodes with the Redis adapter. Defaults to an
   * in-memory coordinator of this transport's own (a FIFO semaphore per host).
   */
  coordinator?: Coordinator;
  /** Lease of one host slot, renewed while held (matters only when shared). Default 60 s. */
  hostSlotTtlMs?: number;
  /** Give up waiting for a host slot after this long and defer; waits as long as it takes when absent. */
  hostSlotWaitMs?: number;
  /** Upper bound on idle sessions kept across all addresses (default MAX_IDLE_SESSIONS). */
  maxIdleSessions?: number;
  /** How long an idle session is kept for the next message to the same address (default IDLE_MS). */
  idleTimeoutMs?: number;
  log?: TransportLog;
}

export type TransportLog = (
  level: "debug" | "info" | "warn",
  message: string,
  fields?: Record<string, unknown>,
) => void;

export interface DeliverParams {
  /** Hosts in the order to try them (already sorted/shuffled by the MX resolver). */
  hosts: MxHost[];
  port: number;
  /** Envelope sender (the VERP return path). */
  envelopeFrom: string;
  recipients: string[];
  raw: Buffer;
  /** Absolute Unix-ms deadline of the job; nothing runs past it (see the module header). */
  deadlineAt?: number;
}

export interface TransportStats {
  /** Connections open now, busy or idle. */
  open: number;
  /** Idle sessions kept for reuse. */
  idle: number;
  /** Addresses with at least one idle session (keys of the idle map). */
  idleAddresses: number;
}

export interface SmtpTransport {
  deliver(params: DeliverParams): Promise<RecipientOutcome[]>;
  /** Read-only counters, for /metrics and tests. */
  stats(): TransportStats;
  /** Closes connections still open; deliveries in flight end with deferred outcomes. */
  close(): Promise<void>;
}

/** What one attempt against one address produced. */
type AttemptResult =
  | { kind: "done"; outcomes: Map<string, Classification>; tls: boolean }
  /** Nothing was decided about the recipients; try the next address or host. */
  | { kind: "next"; failure: Classification; tlsFailed: boolean }
  /** The job's deadline passed: `outcomes` holds what the server decided, the rest get `fallback`. */
  | { kind: "deadline"; outcomes: Map<string, Classification>; fallback: Classification; tls?: boolean };

interface SmtpErrorLike {
  code?: string;
  response?: string;
  responseCode?: number;
  command?: string;
  recipient?: string;
  rejectedErrors?: SmtpErrorLike[];
}
const asSmtpError = (err: unknown): SmtpErrorLike =>
  typeof err === "object" && err !== null ? (err as SmtpErrorLike) : {};

interface EnvelopeState {
  accepted?: unknown;
  rejectedErrors?: unknown;
}
/** nodemailer's envelope of the transaction in progress: an internal field, read defensively. */
const envelopeOf = (connection: SMTPConnection): EnvelopeState | undefined =>
  (connection as unknown as { _envelope?: EnvelopeState })._envelope || undefined;

/**
 * RCPT refusals of a transaction that then failed at DATA (or was cut short). nodemailer attaches
 * them to the error only when every recipient was refused; otherwise they sit on the connection's
 * envelope, so a refused address keeps its own reply instead of inheriting the DATA one.
 */
function rejectedAtRcpt(connection: SMTPConnection): SmtpErrorLike[] {
  const rejected = envelopeOf(connection)?.rejectedErrors;
  return Array.isArray(rejected) ? (rejected as SmtpErrorLike[]) : [];
}
function acceptedAtRcpt(connection: SMTPConnection): Set<string> {
  const accepted = envelopeOf(connection)?.accepted;
  return new Set(Array.isArray(accepted) ? accepted.filter((a): a is string => typeof a === "string") : []);
}

/**
 * Whether a session failed in the STARTTLS handshake. nodemailer reports only some of those as
 * ETLS: an alert from the server (say "protocol version" from an MTA stuck at TLS 1.0) or a reset
 * during the handshake arrives as a socket error, ESOCKET. Its public `upgrading` flag is still set
 * then, and OpenSSL's codes (ERR_SSL_…) survive as `originalCode`.
 */
function failedInTls(connection: SMTPConnection, err: unknown): boolean {
  const e = asSmtpError(err) as SmtpErrorLike & { originalCode?: unknown };
  if (e.code === "ETLS") return true;
  if ((connection as unknown as { upgrading?: unknown }).upgrading === true) return true;
  return typeof e.originalCode === "string" && e.originalCode.startsWith("ERR_SSL_");
}

/** Errors raised before the server said anything about the envelope, or a 421 "closing down". */
function isSessionSetupFailure(err: SmtpErrorLike): boolean {
  if (err.responseCode === 421) return true;
  const command = (err.command ?? "CONN").toUpperCase();
  return (
    command === "CONN" || command.startsWith("EHLO") || command.startsWith("HELO") || command === "STARTTLS"
  );
}

/** How long an idle session is kept for the next message to the same address. */
const IDLE_MS = 5_000;
/** Sessions are recycled after this many messages, as MTAs do, to bound per-connection state. */
const MAX_MESSAGES_PER_SESSION = 100;
/** Idle sessions kept in all; past it the longest-idle one is closed to make room. */
const MAX_IDLE_SESSIONS = 1_000;

/** A recipient the server neither accepted nor refused by name: nothing proves it arrived, so retry. */
const NO_REPLY: Classification = { status: "deferred", response: "no reply recorded for this recipient" };
const deadlineReached = (before: string): Classification => ({
  status: "deferred",
  response: `job deadline reached before ${before}`,
});

const DEADLINE = Symbol("deadline");
/** How much later than the job deadline a library timeout is set (see `capped`). */
const DEADLINE_TIMER_MARGIN_MS = 250;
/**
 * `work`, or DEADLINE if `deadlineAt` comes first; then `onDeadline` tears the work down. The work's
 * own later rejection is absorbed (nodemailer may or may not call back after close()).
 */
function raceDeadline<T>(
  work: Promise<T>,
  deadlineAt: number | undefined,
  onDeadline: () => void,
): Promise<T | typeof DEADLINE> {
  if (deadlineAt === undefined) return work;
  work.catch(() => {});
  return new Promise<T | typeof DEADLINE>((resolve, reject) => {
    const timer = setTimeout(
      () => {
        onDeadline();
        resolve(DEADLINE);
      },
      Math.max(0, deadlineAt - Date.now()),
    );
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

export function createSmtpTransport(options: SmtpTransportOptions): SmtpTransport {
  const ownCoordinator = options.coordinator ? null : createMemoryCoordinator();
  const coordinator = options.coordinator ?? ownCoordinator!;
  const slotLimit = Math.max(1, options.maxConnectionsPerHost);
  const slotTtlMs = options.hostSlotTtlMs ?? 60_000;
  const maxIdle = Math.max(0, options.maxIdleSessions ?? MAX_IDLE_SESSIONS);
  const idleMs = options.idleTimeoutMs ?? IDLE_MS;
  const open = new Set<SMTPConnection>();
  /** Idle sessions per address key, most recently used last. */
  const idle = new Map<string, SMTPConnection[]>();
  /** Each idle session's key and expiry timer; its insertion order is the eviction order. */
  const idleEntries = new Map<SMTPConnection, { key: string; timer: NodeJS.Timeout }>();
  const messagesSent = new WeakMap<SMTPConnection, number>();
  const log: TransportLog = options.log ?? (() => {});
  let closed = false;

  /** Forgets an idle session everywhere; deletes its address key when that list empties. */
  function dropIdle(connection: SMTPConnection): boolean {
    const entry = idleEntries.get(connection);
    if (!entry) return false;
    clearTimeout(entry.timer);
    idleEntries.delete(connection);
    const list = idle.get(entry.key);
    if (list) {
      const at = list.indexOf(connection);
      if (at >= 0) list.splice(at, 1);
      if (list.length === 0) idle.delete(entry.key);
    }
    return true;
  }

  /** An idle session to this address that is still open, if any. */
  function takeIdle(key: string): SMTPConnection | undefined {
    let list = idle.get(key);
    while (list && list.length > 0) {
      const connection = list.at(-1)!;
      dropIdle(connection);
      if (open.has(connection)) return connection;
      list = idle.get(key);
    }
    return undefined;
  }

  function putIdle(key: string, connection: SMTPConnection): void {
    const sent = (messagesSent.get(connection) ?? 0) + 1;
    messagesSent.set(connection, sent);
    const list = idle.get(key) ?? [];
    if (closed || !open.has(connection) || sent >= MAX_MESSAGES_PER_SESSION || list.length >= slotLimit) {
      connection.quit();
      return;
    }
    if (maxIdle === 0) return void connection.quit();
    while (idleEntries.size >= maxIdle) {
      const oldest = idleEntries.keys().next().value as SMTPConnection;
      dropIdle(oldest);
      oldest.quit();
    }
    list.push(connection);
    idle.set(key, list);
    const timer = setTimeout(() => {
      dropIdle(connection);
      connection.quit();
    }, idleMs);
    timer.unref();
    idleEntries.set(connection, { key, timer });
  }

  /** Remaining ms before the deadline (Infinity without one). */
  const timeLeft = (deadlineAt: number | undefined) =>
    deadlineAt === undefined ? Infinity : deadlineAt - Date.now();
  /**
   * A library timeout no longer than the job has left, plus a margin: the deadline's own timer
   * (`raceDeadline`) closes the session at `deadlineAt`, and a nodemailer timer due at the same
   * millisecond would otherwise race it and report "Greeting never received" instead of the
   * deadline. The margin only matters when the deadline is the nearer of the two.
   */
  const capped = (ms: number, deadlineAt: number | undefined) =>
    Math.max(1, Math.min(ms, timeLeft(deadlineAt) + DEADLINE_TIMER_MARGIN_MS));

  /** A new session object; `ready` settles once it has greeted, said EHLO and maybe STARTTLS. */
  function openSession(
    address: string,
    port: number,
    servername: string,
    plaintext: boolean,
    deadlineAt: number | undefined,
  ): { connection: SMTPConnection; ready: Promise<void> } {
    const connectTimeout = capped(options.connectTimeoutMs, deadlineAt);
    const connection = new SMTPConnection({
      host: address,
      port,
      name: options.heloName,
      secure: false,
      ignoreTLS: plaintext,
      opportunisticTLS: true,
      tls: { rejectUnauthorized: false, servername },
      connectionTimeout: connectTimeout,
      greetingTimeout: capped(options.greetingTimeoutMs ?? options.connectTimeoutMs, deadlineAt),
      socketTimeout: options.socketTimeoutMs ?? 120_000,
      logger: false,
    });
    open.add(connection);
    // SMTPConnection reports failures as 'error' events; without a listener one would crash the process.
    connection.on("error", () => {});
    connection.once("end", () => {
      open.delete(connection);
      dropIdle(connection); // the server closed an idle session
    });
    const ready = new Promise<void>((resolve, reject) => {
      connection.once("error", reject);
      connection.once("end", () =>
        reject(
          Object.assign(new Error("connection closed before the session was set up"), {
            code: "ECONNECTION",
          }),
        ),
      );
      connection.connect((err) => {
        connection.removeListener("error", reject);
        if (err) reject(err);
        else resolve();
      });
    });
    return { connection, ready };
  }

  /** Closes a session and forgets it at once (its 'end' event may come later, or not at all). */
  function discard(connection: SMTPConnection): void {
    dropIdle(connection);
    connection.close();
    open.delete(connection);
  }

  function send(connection: SMTPConnection, envelope: { from: string; to: string[] }, raw: Buffer) {
    return new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
      connection.send(envelope, raw, (err, info) => (err ? reject(err) : resolve(info)));
    });
  }

  async function attempt(
    host: MxHost,
    address: string,
    params: DeliverParams,
    plaintext: boolean,
    allowReuse = true,
  ): Promise<AttemptResult> {
    const { deadlineAt } = params;
    const key = `${address}|${params.port}|${plaintext ? "plain" : "tls"}|${host.exchange}`;
    let connection = allowReuse ? takeIdle(key) : undefined;
    const reused = connection !== undefined;
    if (!connection) {
      const session = openSession(address, params.port, host.exchange, plaintext, deadlineAt);
      try {
        const ready = await raceDeadline(session.ready, deadlineAt, () => discard(session.connection));
        if (ready === DEADLINE) {
          return {
            kind: "deadline",
            outcomes: new Map(),
            fallback: deadlineReached(`the session with ${host.exchange} (${address}) was set up`),
          };
        }
      } catch (err) {
        const tlsFailed = failedInTls(session.connection, err);
        discard(session.connection);
        return { kind: "next", failure: classifyError(err), tlsFailed };
      }
      connection = session.connection;
    }
    const tls = connection.secure;
    const outcomes = new Map<string, Classification>();
    const live = connection;
    try {
      const info = await raceDeadline(
        send(live, { from: params.envelopeFrom, to: params.recipients }, params.raw),
        deadlineAt,
        () => discard(live),
      );
      if (info === DEADLINE) {
        // Refused or deferred at RCPT: the server's own verdict. Accepted at RCPT but the message
        // not yet confirmed after DATA: nothing proves it arrived, so it is retried.
        for (const rejected of rejectedAtRcpt(live)) {
          const r = asSmtpError(rejected);
          if (r.recipient) outcomes.set(r.recipient, classifyError(rejected));
        }
        const accepted = acceptedAtRcpt(live);
        for (const recipient of accepted) {
          if (!outcomes.has(recipient))
            outcomes.set(recipient, deadlineReached(`${host.exchange} confirmed the message after DATA`));
        }
        return {
          kind: "deadline",
          outcomes,
          fallback: deadlineReached(`${host.exchange} answered for this recipient`),
          tls,
        };
      }
      const confirmed = classifyReply(info.response, "data");
      for (const recipient of info.accepted) outcomes.set(recipient, confirmed);
      for (const rejected of info.rejectedErrors ?? []) {
        const e = asSmtpError(rejected);
        if (e.recipient) outcomes.set(e.recipient, classifyError(rejected));
      }
      putIdle(key, live);
      return { kind: "done", outcomes, tls };
    } catch (err) {
      const e = asSmtpError(err);
      if (outcomes.size === 0 && isSessionSetupFailure(e)) {
        discard(live);
        // The server may have dropped an idle session between messages: try once on a fresh one.
        if (reused && timeLeft(deadlineAt) > 0) return attempt(host, address, params, plaintext, false);
        return { kind: "next", failure: classifyError(err), tlsFailed: false };
      }
      // Recipients refused at RCPT keep their own reply; everyone else shares the error that ended
      // the transaction (MAIL FROM refused, DATA refused, connection lost mid-message).
      for (const rejected of e.rejectedErrors ?? rejectedAtRcpt(live)) {
        const r = asSmtpError(rejected);
        if (r.recipient) outcomes.set(r.recipient, classifyError(rejected));
      }
      const shared = classifyError(err);
      for (const recipient of params.recipients)
        if (!outcomes.has(recipient)) outcomes.set(recipient, shared);
      discard(live);
      return { kind: "done", outcomes, tls };
    }
  }

  async function deliver(params: DeliverParams): Promise<RecipientOutcome[]> {
    const started = Date.now();
    const { deadlineAt } = params;
    const failures: { host: string; failure: Classification }[] = [];
    const finish = (
      results: Map<string, Classification> | Classification,
      mxHost?: string,
      tls?: boolean,
      fallback: Classification = NO_REPLY,
    ) =>
      params.recipients.map((recipient): RecipientOutcome => {
        const c = results instanceof Map ? (results.get(recipient) ?? fallback) : results;
        const outcome: RecipientOutcome = { recipient, ...c, latencyMs: Date.now() - started };
        if (mxHost !== undefined) outcome.mxHost = mxHost;
        if (tls !== undefined) outcome.tls = tls;
        return outcome;
      });

    for (const host of params.hosts) {
      for (const address of host.addresses) {
        if (closed)
          return finish({ status: "deferred", response: "delivery engine is shutting down" }, host.exchange);
        if (timeLeft(deadlineAt) <= 0)
          return finish(deadlineReached(`a connection to ${host.exchange} was tried`), host.exchange);
        // The wait for a slot is capped by the time left; undefined means "as long as it takes".
        const waitMs = Math.min(options.hostSlotWaitMs ?? Infinity, Math.max(0, timeLeft(deadlineAt)));
        let release: () => Promise<void>;
        try {
          const acquiring = coordinator.acquireHostSlot(
            host.exchange,
            slotLimit,
            slotTtlMs,
            Number.isFinite(waitMs) ? { waitMs } : {},
          );
          // The cap above bounds the coordinator's own wait; the race also covers a coordinator that
          // is slow to answer (Redis), and hands back a slot that arrives after the deadline.
          const acquired = await raceDeadline(acquiring, deadlineAt, () => {
            acquiring.then(
              (late) => late(),
              () => {},
            );
          });
          if (acquired === DEADLINE) throw new Error("job deadline reached");
          release = acquired;
        } catch (err) {
          if (timeLeft(deadlineAt) <= 0) {
            return finish(
              deadlineReached(`a connection slot for ${host.exchange} became free`),
              host.exchange,
            );
          }
          // The host stayed full for the whole wait (HostSlotTimeoutError), or the coordinator is
          // unreachable: nothing was said about the recipients, so this host counts as a temporary
          // failure and the next MX host gets its turn; if none is left the recipients are deferred.
          const response = err instanceof Error ? err.message : String(err);
          log("info", "no connection slot for MX host, trying next", { host: host.exchange, response });
          failures.push({ host: host.exchange, failure: { status: "deferred", response } });
          break;
        }
        try {
          let result = await attempt(host, address, params, false);
          if (result.kind === "next" && result.tlsFailed && timeLeft(deadlineAt) > 0) {
            log("info", "STARTTLS handshake failed, retrying in plaintext", { host: host.exchange, address });
            result = await attempt(host, address, params, true);
          }
          if (result.kind === "done") return finish(result.outcomes, host.exchange, result.tls);
          if (result.kind === "deadline") {
            log("info", "job deadline reached during SMTP delivery", { host: host.exchange, address });
            return finish(result.outcomes, host.exchange, result.tls, result.fallback);
          }
          log("info", "MX attempt failed, trying next", {
            host: host.exchange,
            address,
            response: result.failure.response,
          });
          failures.push({ host: host.exchange, failure: result.failure });
        } finally {
          await release();
        }
      }
    }

    // Every host failed before the envelope. A bounce only if every one of them refused us
    // permanently; one temporary failure means a later attempt may well succeed.
    const last = failures.at(-1);
    if (!last) return finish({ status: "deferred", response: "no MX host to try" });
    const allPermanent = failures.every((f) => f.failure.status === "bounced");
    const temporary = [...failures].reverse().find((f) => f.failure.status !== "bounced") ?? last;
    const chosen = allPermanent ? last : temporary;
    return finish(chosen.failure, chosen.host, false);
  }

  return {
    deliver,
    stats: () => ({ open: open.size, idle: idleEntries.size, idleAddresses: idle.size }),
    async close() {
      closed = true;
      for (const connection of [...idleEntries.keys()]) dropIdle(connection);
      for (const connection of [...open]) connection.close();
      open.clear();
      await ownCoordinator?.close();
    },
  };
}
