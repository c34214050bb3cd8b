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
 * Sessions are reused: after a successful transaction the connection goes back to an idle list per
 * address (at most `maxConnectionsPerHost` idle, each closed after IDLE_MS or MAX_MESSAGES_PER_SESSION
 * messages), so a busy destination costs one TCP + EHLO + STARTTLS per many messages, as in
 * nodemailer's pool and Postfix's connection cache. A reused session that turns out to be dead before
 * the server said anything about the envelope is replaced by a fresh one, once.
 *
 * Invariant: `deliver` never throws; every recipient comes back with an outcome.
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
}

export interface SmtpTransport {
  deliver(params: DeliverParams): Promise<RecipientOutcome[]>;
  /** Closes connections still open; deliveries in flight end with deferred outcomes. */
  close(): Promise<void>;
}

/** What one attempt against one address produced. */
type AttemptResult =
  | { kind: "done"; outcomes: Map<string, Classification>; tls: boolean }
  /** Nothing was decided about the recipients; try the next address or host. */
  | { kind: "next"; failure: Classification; tlsFailed: boolean };

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

/**
 * RCPT refusals of a transaction that then failed at DATA. nodemailer attaches them to the error
 * only when every recipient was refused; otherwise they sit on the connection's envelope, an
 * internal field read defensively here so a refused address keeps its own 5xx instead of
 * inheriting the DATA reply.
 */
function rejectedAtRcpt(connection: SMTPConnection): SmtpErrorLike[] {
  const envelope = (connection as unknown as { _envelope?: { rejectedErrors?: unknown } })._envelope;
  return Array.isArray(envelope?.rejectedErrors) ? (envelope.rejectedErrors as SmtpErrorLike[]) : [];
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

/** A recipient the server neither accepted nor refused by name: nothing proves it arrived, so retry. */
const NO_REPLY: Classification = { status: "deferred", response: "no reply recorded for this recipient" };

export function createSmtpTransport(options: SmtpTransportOptions): SmtpTransport {
  const ownCoordinator = options.coordinator ? null : createMemoryCoordinator();
  const coordinator = options.coordinator ?? ownCoordinator!;
  const slotLimit = Math.max(1, options.maxConnectionsPerHost);
  const slotTtlMs = options.hostSlotTtlMs ?? 60_000;
  const slotWait = options.hostSlotWaitMs !== undefined ? { waitMs: options.hostSlotWaitMs } : {};
  const open = new Set<SMTPConnection>();
  const idle = new Map<string, SMTPConnection[]>();
  const idleTimers = new Map<SMTPConnection, NodeJS.Timeout>();
  const messagesSent = new WeakMap<SMTPConnection, number>();
  const log: TransportLog = options.log ?? (() => {});
  let closed = false;

  /** An idle session to this address that is still open, if any. */
  function takeIdle(key: string): SMTPConnection | undefined {
    const list = idle.get(key);
    while (list && list.length > 0) {
      const connection = list.pop()!;
      clearTimeout(idleTimers.get(connection));
      idleTimers.delete(connection);
      if (open.has(connection)) return connection;
    }
    return undefined;
  }

  function putIdle(key: string, connection: SMTPConnection): void {
    const sent = (messagesSent.get(connection) ?? 0) + 1;
    messagesSent.set(connection, sent);
    const list = idle.get(key) ?? [];
    if (closed || sent >= MAX_MESSAGES_PER_SESSION || list.length >= slotLimit) {
      connection.quit();
      return;
    }
    list.push(connection);
    idle.set(key, list);
    const timer = setTimeout(() => {
      idleTimers.delete(connection);
      const at = list.indexOf(connection);
      if (at >= 0) list.splice(at, 1);
      connection.quit();
    }, IDLE_MS);
    timer.unref();
    idleTimers.set(connection, timer);
  }

  function connect(
    address: string,
    port: number,
    servername: string,
    plaintext: boolean,
  ): Promise<SMTPConnection> {
    const connection = new SMTPConnection({
      host: address,
      port,
      name: options.heloName,
      secure: false,
      ignoreTLS: plaintext,
      opportunisticTLS: true,
      tls: { rejectUnauthorized: false, servername },
      connectionTimeout: options.connectTimeoutMs,
      greetingTimeout: options.greetingTimeoutMs ?? options.connectTimeoutMs,
      socketTimeout: options.socketTimeoutMs ?? 120_000,
      logger: false,
    });
    open.add(connection);
    // SMTPConnection reports failures as 'error' events; without a listener one would crash the process.
    connection.on("error", () => {});
    connection.once("end", () => open.delete(connection));
    return new Promise((resolve, reject) => {
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
        else resolve(connection);
      });
    });
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
    const key = `${address}|${params.port}|${plaintext ? "plain" : "tls"}|${host.exchange}`;
    let connection = allowReuse ? takeIdle(key) : undefined;
    const reused = connection !== undefined;
    if (!connection) {
      try {
        connection = await connect(address, params.port, host.exchange, plaintext);
      } catch (err) {
        const e = asSmtpError(err);
        return { kind: "next", failure: classifyError(err), tlsFailed: e.code === "ETLS" };
      }
    }
    const tls = connection.secure;
    const outcomes = new Map<string, Classification>();
    try {
      const info = await send(connection, { from: params.envelopeFrom, to: params.recipients }, params.raw);
      const accepted = classifyReply(info.response, "data");
      for (const recipient of info.accepted) outcomes.set(recipient, accepted);
      for (const rejected of info.rejectedErrors ?? []) {
        const e = asSmtpError(rejected);
        if (e.recipient) outcomes.set(e.recipient, classifyError(rejected));
      }
      putIdle(key, connection);
      return { kind: "done", outcomes, tls };
    } catch (err) {
      const e = asSmtpError(err);
      if (outcomes.size === 0 && isSessionSetupFailure(e)) {
        connection.close();
        // The server may have dropped an idle session between messages: try once on a fresh one.
        if (reused) return attempt(host, address, params, plaintext, false);
        return { kind: "next", failure: classifyError(err), tlsFailed: false };
      }
      // Recipients refused at RCPT keep their own reply; everyone else shares the error that ended
      // the transaction (MAIL FROM refused, DATA refused, connection lost mid-message).
      for (const rejected of e.rejectedErrors ?? rejectedAtRcpt(connection)) {
        const r = asSmtpError(rejected);
        if (r.recipient) outcomes.set(r.recipient, classifyError(rejected));
      }
      const shared = classifyError(err);
      for (const recipient of params.recipients)
        if (!outcomes.has(recipient)) outcomes.set(recipient, shared);
      connection.close();
      return { kind: "done", outcomes, tls };
    }
  }

  async function deliver(params: DeliverParams): Promise<RecipientOutcome[]> {
    const started = Date.now();
    const failures: { host: string; failure: Classification }[] = [];
    const finish = (results: Map<string, Classification> | Classification, mxHost?: string, tls?: boolean) =>
      params.recipients.map((recipient): RecipientOutcome => {
        const c = results instanceof Map ? (results.get(recipient) ?? NO_REPLY) : results;
        const outcome: RecipientOutcome = { recipient, ...c, latencyMs: Date.now() - started };
        if (mxHost !== undefined) outcome.mxHost = mxHost;
        if (tls !== undefined) outcome.tls = tls;
        return outcome;
      });

    for (const host of params.hosts) {
      for (const address of host.addresses) {
        if (closed)
          return finish({ status: "deferred", response: "delivery engine is shutting down" }, host.exchange);
        let release: () => Promise<void>;
        try {
          release = await coordinator.acquireHostSlot(host.exchange, slotLimit, slotTtlMs, slotWait);
        } catch (err) {
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
          if (result.kind === "next" && result.tlsFailed) {
            log("info", "STARTTLS handshake failed, retrying in plaintext", { host: host.exchange, address });
            result = await attempt(host, address, params, true);
          }
          if (result.kind === "done") return finish(result.outcomes, host.exchange, result.tls);
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
    async close() {
      closed = true;
      for (const timer of idleTimers.values()) clearTimeout(timer);
      idleTimers.clear();
      idle.clear();
      for (const connection of open) connection.close();
      open.clear();
      await ownCoordinator?.close();
    },
  };
}
