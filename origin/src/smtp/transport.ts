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
 * required to verify (MX certificates rarely match); if the handshake itself fails the same address
 * is retried once in plaintext, as Postfix does. A recipient domain's MTA-STS policy
 * (`DeliverParams.tlsPolicy`, RFC 8461 §5, found by smtp/mta-sts.ts) changes that:
 *  - `enforce`: only MX hosts matching the policy's `mx` patterns are tried; STARTTLS is required
 *    and the certificate must validate for the MX name (Node's roots plus `tlsCa`); no plaintext
 *    fallback. A host that fails this is skipped like an unreachable one, and when none is left the
 *    recipients are deferred (4.7.5, "MTA-STS policy for <domain> requires TLS …"), never bounced
 *    for it: the policy or certificate may be fixed, and a bounce would lose the mail.
 *  - `testing`: delivered as without a policy; the first way the delivery fell short of the policy
 *    is logged and reported in the outcome's `mtaSts.failure`.
 * Each outcome says whether TLS carried it (`tls`) and its version (`tlsVersion`, e.g. "TLSv1.3").
 * DANE (RFC 7672) is not implemented.
 *
 * Job deadline (`DeliverParams.deadlineAt`, see docs/architecture.md for how it relates to the
 * hub's lease and the node's claim: deadline < lease < claim). Nothing here runs past it:
 *  - waiting for a host slot is capped by the time left;
 *  - the connect timeout and the RFC 5321 §4.5.3.2 timer of every step (greeting, EHLO, MAIL, RCPT,
 *    DATA, data blocks, the reply after "."; smtp/step-timeouts.ts, SMTP_TIMEOUT_*_MS) are capped by
 *    the time left; a step that times out fails like any failure at that step;
 *  - a timer closes the session at the deadline whatever the server is doing (the step timers and
 *    socketTimeout restart on each reply: a server trickling replies would otherwise hold us long).
 * At the deadline a recipient the server already decided (accepted after DATA, refused or deferred
 * at RCPT) keeps that outcome; every other one is `deferred` with "job deadline reached before …".
 * The slot is released and the session closed (never put back idle) on the way out.
 *
 * Sessions are reused: after a successful transaction the connection goes back to an idle list per
 * address (at most `maxConnectionsPerHost` idle per address, MAX_IDLE_SESSIONS in all, each closed
 * after IDLE_MS, and closed with QUIT after `maxMessagesPerConnection` messages), so a busy destination costs one TCP + EHLO +
 * STARTTLS per many messages, as in nodemailer's pool and Postfix's connection cache. A reused
 * session that turns out to be dead before the server said anything about the envelope is replaced
 * by a fresh one, once.
 *
 * Source addresses (IP pools, smtp/source-address.ts): with `DeliverParams.source`, every connection
 * binds `localAddress` to the source of the MX address's family and says EHLO with that address's
 * name; an MX address of a family the source lacks is skipped like an unreachable one. The source
 * address is part of the idle-session key, so a session is only reused from the address it is bound
 * to, never for a job of another pool; each outcome names it (`sourceAddress`).
 *
 * Invariants:
 *  - `deliver` never throws; every recipient comes back with an outcome;
 *  - an idle session is in exactly one list of `idle`, has one timer, and an address key exists only
 *    while its list is non-empty: expiry, eviction, the server closing it, and `close()` all go
 *    through `dropIdle`, so `stats()` reads zero once every session has gone.
 */
import { createSecureContext, rootCertificates, type TLSSocket } from "node:tls";
import type SMTPConnection from "nodemailer/lib/smtp-connection/index.js";
import type { RecipientOutcome } from "../../../shared/link/protocol.ts";
import { classifyError, classifyReply, type Classification } from "../delivery/classify.ts";
import { createMemoryCoordinator, type Coordinator } from "../coord/index.ts";
import { mxMatches } from "./mta-sts.ts";
import type { MxHost } from "./mx.ts";
import { familyOf, type SourceBinding } from "./source-address.ts";
import {
  DEADLINE_TIMER_MARGIN_MS,
  RFC5321_TIMEOUTS,
  StepTimedConnection,
  type SmtpStepTimeouts,
} from "./step-timeouts.ts";

export interface SmtpTransportOptions {
  /** EHLO name; must resolve back to the sending IP at real receivers. */
  heloName: string;
  connectTimeoutMs: number;
  /** The initial 220; same as `stepTimeouts.greetingMs` (which wins), kept for existing callers. */
  greetingTimeoutMs?: number;
  /**
   * A timer per reply awaited (RFC 5321 §4.5.3.2; smtp/step-timeouts.ts), each capped by the job
   * deadline; unset ones take the RFC's values (SMTP_TIMEOUT_*_MS).
   */
  stepTimeouts?: Partial<SmtpStepTimeouts>;
  /** Inactivity backstop once connected; default the longest step timeout (the step timers decide first). */
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
  /**
   * Messages one session carries before it is closed with QUIT (MAX_MESSAGES_PER_CONNECTION,
   * default MAX_MESSAGES_PER_SESSION), as Postfix's smtp_connection_reuse_count_limit.
   */
  maxMessagesPerConnection?: number;
  /**
   * Extra CA certificates (PEM), trusted beside Node's bundled roots when a certificate is checked
   * (MTA_STS_CA_FILE; tests use their own CA).
   */
  tlsCa?: string;
  log?: TransportLog;
}

/** What a recipient domain's MTA-STS policy asks of this delivery (see the module header). */
export interface TlsPolicy {
  /** The recipient domain that published it, for responses and logs. */
  domain: string;
  mode: "enforce" | "testing";
  /** MX host patterns (smtp/mta-sts.ts `mxMatches`). */
  mx: readonly string[];
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
  /** The recipient domain's MTA-STS policy in mode enforce or testing; absent = opportunistic TLS. */
  tlsPolicy?: TlsPolicy;
  /**
   * Called with the transaction's outcomes as soon as the server's last reply is parsed, before the
   * host slot is released and the session put back (both may wait on Redis): the job runner
   * journals a 250 here, so a process killed in between does not deliver it again. The same
   * outcomes are returned by `deliver` afterwards. A callback that throws is ignored.
   */
  onOutcome?: (outcomes: RecipientOutcome[]) => void;
  /**
   * The source address per address family (the job's IP pool, smtp/source-address.ts); absent = the
   * system picks it and EHLO says `heloName`.
   */
  source?: { 4?: SourceBinding; 6?: SourceBinding };
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

/** The TLS state of a session, read off its socket. */
interface TlsState {
  secure: boolean;
  /** "TLSv1.3", "TLSv1.2" once upgraded. */
  version?: string;
  /** Whether the certificate chained to a trusted root and matched the MX name. */
  authorized: boolean;
  authorizationError?: string;
}
const NO_TLS: TlsState = { secure: false, authorized: false };

/**
 * plain: no STARTTLS (the fallback after a failed handshake); tls: opportunistic, certificate not
 * required to verify; verified: STARTTLS required and the certificate must verify (MTA-STS enforce).
 */
type SessionMode = "plain" | "tls" | "verified";

/** What one attempt against one address produced. */
type AttemptResult =
  | { kind: "done"; outcomes: Map<string, Classification>; tls: TlsState }
  /** Nothing was decided about the recipients; try the next address or host. */
  | { kind: "next"; failure: Classification; tlsFailed: boolean }
  /** The job's deadline passed: `outcomes` holds what the server decided, the rest get `fallback`. */
  | { kind: "deadline"; outcomes: Map<string, Classification>; fallback: Classification; tls?: TlsState };

/** The session's TLS socket state; nodemailer keeps the upgraded socket in its internal `_socket`. */
function tlsStateOf(connection: SMTPConnection): TlsState {
  if (!connection.secure) return NO_TLS;
  const socket = (connection as unknown as { _socket?: Partial<TLSSocket> })._socket;
  const state: TlsState = { secure: true, authorized: socket?.authorized === true };
  const version = typeof socket?.getProtocol === "function" ? socket.getProtocol() : null;
  if (version) state.version = version;
  const error = socket?.authorizationError as unknown;
  if (error) state.authorizationError = error instanceof Error ? error.message : String(error);
  return state;
}

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
/**
 * Sessions are recycled after this many messages, as MTAs do: it bounds per-connection state on
 * both sides, and spreads a long run over the MX addresses as DNS and the shuffle change.
 */
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
// DEADLINE_TIMER_MARGIN_MS (smtp/step-timeouts.ts): how much later than the job deadline a library
// or step timeout is set (see `capped`).
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
  const maxMessages = Math.max(1, options.maxMessagesPerConnection ?? MAX_MESSAGES_PER_SESSION);
  const open = new Set<StepTimedConnection>();
  /** Idle sessions per address key, most recently used last. */
  const idle = new Map<string, StepTimedConnection[]>();
  /** Each idle session's key and expiry timer; its insertion order is the eviction order. */
  const idleEntries = new Map<StepTimedConnection, { key: string; timer: NodeJS.Timeout }>();
  const messagesSent = new WeakMap<StepTimedConnection, number>();
  const log: TransportLog = options.log ?? (() => {});
  const stepTimeouts: SmtpStepTimeouts = {
    ...RFC5321_TIMEOUTS,
    ...(options.greetingTimeoutMs !== undefined ? { greetingMs: options.greetingTimeoutMs } : {}),
    ...options.stepTimeouts,
  };
  const socketTimeoutMs = options.socketTimeoutMs ?? Math.max(...Object.values(stepTimeouts));
  // One TLS context for every session, built once: per connection it costs CPU (about 2 ms with
  // Node's roots, 12 ms with an extra CA, measured on the dev box). `ca` replaces Node's bundled
  // roots, so an extra CA is added to them rather than set alone.
  const secureContext = createSecureContext(
    options.tlsCa ? { ca: [...rootCertificates, options.tlsCa] } : {},
  );
  let closed = false;

  /** Forgets an idle session everywhere; deletes its address key when that list empties. */
  function dropIdle(connection: StepTimedConnection): boolean {
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
  function takeIdle(key: string): StepTimedConnection | undefined {
    let list = idle.get(key);
    while (list && list.length > 0) {
      const connection = list.at(-1)!;
      dropIdle(connection);
      if (open.has(connection)) return connection;
      list = idle.get(key);
    }
    return undefined;
  }

  function putIdle(key: string, connection: StepTimedConnection): void {
    const sent = (messagesSent.get(connection) ?? 0) + 1;
    messagesSent.set(connection, sent);
    const list = idle.get(key) ?? [];
    if (closed || !open.has(connection) || sent >= maxMessages || list.length >= slotLimit) {
      connection.quit();
      return;
    }
    if (maxIdle === 0) return void connection.quit();
    while (idleEntries.size >= maxIdle) {
      const oldest = idleEntries.keys().next().value as StepTimedConnection;
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
    mode: SessionMode,
    deadlineAt: number | undefined,
    source: SourceBinding | undefined,
  ): { connection: StepTimedConnection; ready: Promise<void> } {
    const connectTimeout = capped(options.connectTimeoutMs, deadlineAt);
    // The certificate is always checked against the MX name (Node does it with `servername`), so
    // `authorized` is meaningful; only a verified session refuses to go on when it fails.
    const tls = { rejectUnauthorized: mode === "verified", servername, secureContext };
    const connection = new StepTimedConnection({
      host: address,
      port,
      name: source?.heloName ?? options.heloName,
      ...(source ? { localAddress: source.address } : {}),
      secure: false,
      ...(mode === "verified"
        ? { requireTLS: true }
        : { ignoreTLS: mode === "plain", opportunisticTLS: true }),
      tls,
      connectionTimeout: connectTimeout,
      // The greeting and each reply after it have their own timers (smtp/step-timeouts.ts).
      greetingTimeout: capped(stepTimeouts.greetingMs, deadlineAt),
      socketTimeout: socketTimeoutMs,
      stepTimeouts,
      ...(deadlineAt !== undefined ? { deadlineAt } : {}),
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
  function discard(connection: StepTimedConnection): void {
    dropIdle(connection);
    connection.close();
    open.delete(connection);
  }

  function send(connection: StepTimedConnection, envelope: { from: string; to: string[] }, raw: Buffer) {
    return new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
      connection.send(envelope, raw, (err, info) => (err ? reject(err) : resolve(info)));
    });
  }

  async function attempt(
    host: MxHost,
    address: string,
    params: DeliverParams,
    mode: SessionMode,
    source: SourceBinding | undefined,
    allowReuse = true,
  ): Promise<AttemptResult> {
    const { deadlineAt } = params;
    // The mode is in the key: a verified session is only reused where verification was asked for;
    // so is the source address: a session is only reused from the address (the pool) it is bound to.
    const key = `${address}|${params.port}|${mode}|${host.exchange}|${source?.address ?? ""}`;
    let connection = allowReuse ? takeIdle(key) : undefined;
    const reused = connection !== undefined;
    // A reused session's step timers are capped by this job's deadline, not its first job's.
    if (connection) connection.deadlineAt = deadlineAt;
    if (!connection) {
      const session = openSession(address, params.port, host.exchange, mode, deadlineAt, source);
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
    const tls = tlsStateOf(connection);
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
        if (reused && timeLeft(deadlineAt) > 0) return attempt(host, address, params, mode, source, false);
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
    const policy = params.tlsPolicy;
    const enforce = policy?.mode === "enforce";
    const failures: { host: string; failure: Classification; policyFailure?: string }[] = [];
    const finish = (
      results: Map<string, Classification> | Classification,
      extras: {
        mxHost?: string;
        tls?: TlsState;
        fallback?: Classification;
        policyFailure?: string;
        sourceAddress?: string;
      } = {},
    ) =>
      params.recipients.map((recipient): RecipientOutcome => {
        const c = results instanceof Map ? (results.get(recipient) ?? extras.fallback ?? NO_REPLY) : results;
        const outcome: RecipientOutcome = { recipient, ...c, latencyMs: Date.now() - started };
        if (extras.mxHost !== undefined) outcome.mxHost = extras.mxHost;
        if (extras.sourceAddress !== undefined) outcome.sourceAddress = extras.sourceAddress;
        if (extras.tls !== undefined) {
          outcome.tls = extras.tls.secure;
          if (extras.tls.version) outcome.tlsVersion = extras.tls.version;
        }
        if (policy) {
          outcome.mtaSts = {
            mode: policy.mode,
            // Bounded like the protocol field: a server's reply is quoted in it.
            ...(extras.policyFailure ? { failure: extras.policyFailure.slice(0, 1_000) } : {}),
          };
        }
        return outcome;
      });
    /** An enforce policy not met by any host: retried later, never bounced (module header). */
    const policyDeferral = (reason: string): Classification => ({
      status: "deferred",
      enhancedCode: "4.7.5",
      response: `MTA-STS policy for ${policy?.domain} requires TLS with a valid certificate from a listed MX host: ${reason}`,
    });

    for (const host of params.hosts) {
      const unlisted =
        policy && !mxMatches(host.exchange, policy.mx)
          ? `MX host ${host.exchange} is not listed in the policy (mx: ${policy.mx.join(", ")})`
          : undefined;
      if (unlisted && enforce) {
        log("info", "MTA-STS: MX host not listed in the enforced policy, not tried", {
          domain: policy?.domain,
          host: host.exchange,
        });
        failures.push({ host: host.exchange, failure: policyDeferral(unlisted), policyFailure: unlisted });
        continue;
      }
      for (const address of host.addresses) {
        // A host name (the smarthost) may resolve to either family: IPv4 first, as the resolver does.
        const family = familyOf(address);
        const source = !params.source
          ? undefined
          : family === 0
            ? (params.source[4] ?? params.source[6])
            : params.source[family];
        if (params.source && !source) {
          // Not from another address than the pool's: this MX address is out of reach for this job.
          failures.push({
            host: host.exchange,
            failure: {
              status: "deferred",
              response: `no source address of the job's IP pool can reach ${address} (IPv${family})`,
            },
          });
          continue;
        }
        if (closed)
          return finish(
            { status: "deferred", response: "delivery engine is shutting down" },
            { mxHost: host.exchange },
          );
        if (timeLeft(deadlineAt) <= 0)
          return finish(deadlineReached(`a connection to ${host.exchange} was tried`), {
            mxHost: host.exchange,
          });
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
            return finish(deadlineReached(`a connection slot for ${host.exchange} became free`), {
              mxHost: host.exchange,
            });
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
          let result = await attempt(host, address, params, enforce ? "verified" : "tls", source);
          /** Testing mode: why this delivery would not have met the policy, if it would not have. */
          let shortfall = unlisted;
          if (result.kind === "next" && result.tlsFailed) {
            if (enforce) {
              const reason = `no valid TLS with ${host.exchange} (${address}): ${result.failure.response}`;
              log("info", "MTA-STS: TLS with MX host failed under the enforced policy, trying next", {
                domain: policy?.domain,
                host: host.exchange,
                address,
                response: result.failure.response,
              });
              failures.push({ host: host.exchange, failure: policyDeferral(reason), policyFailure: reason });
              continue;
            }
            if (timeLeft(deadlineAt) > 0) {
              log("info", "STARTTLS handshake failed, retrying in plaintext", {
                host: host.exchange,
                address,
              });
              shortfall ??= `the STARTTLS handshake with ${host.exchange} failed: ${result.failure.response}`;
              result = await attempt(host, address, params, "plain", source);
            }
          }
          if (result.kind === "done") {
            // `done` is the server's verdict: report it before the slot release in `finally`.
            const report = (outcomes: RecipientOutcome[]) => {
              try {
                params.onOutcome?.(outcomes);
              } catch (err) {
                log("warn", "outcome callback threw", { error: String(err) });
              }
              return outcomes;
            };
            if (policy && !enforce) {
              if (!result.tls.secure) shortfall ??= `${host.exchange} did not offer STARTTLS`;
              else if (!result.tls.authorized)
                shortfall ??= `the certificate of ${host.exchange} is not valid for it: ${result.tls.authorizationError ?? "not verified"}`;
              if (shortfall)
                log("warn", "MTA-STS testing-mode policy not met; delivered anyway", {
                  domain: policy.domain,
                  host: host.exchange,
                  failure: shortfall,
                });
            }
            return report(
              finish(result.outcomes, {
                mxHost: host.exchange,
                tls: result.tls,
                ...(shortfall && !enforce ? { policyFailure: shortfall } : {}),
                ...(source ? { sourceAddress: source.address } : {}),
              }),
            );
          }
          if (result.kind === "deadline") {
            log("info", "job deadline reached during SMTP delivery", { host: host.exchange, address });
            return finish(result.outcomes, {
              mxHost: host.exchange,
              ...(result.tls ? { tls: result.tls } : {}),
              fallback: result.fallback,
              ...(source ? { sourceAddress: source.address } : {}),
            });
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
    return finish(chosen.failure, {
      mxHost: chosen.host,
      tls: NO_TLS,
      ...(chosen.policyFailure ? { policyFailure: chosen.policyFailure } : {}),
    });
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
