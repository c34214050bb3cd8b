/**
 * SMTP submission, as SendGrid's SMTP relay takes it (docs/smtp-submission.md): `AUTH PLAIN` or
 * `LOGIN` with the user name `apikey` and an API key as the password, on a STARTTLS port (587) and
 * an implicit-TLS port (465, RFC 8314 §3.3). Each message is converted to a mail/send body
 * (convert.ts) and sent to the edge's own `POST /v3/mail/send` with that key (edge-client.ts): the
 * 250 comes only after the edge's 202, i.e. once the hub has durably accepted it; every refusal
 * gets its SMTP code, and a failure to reach the edge is a 451, so the client keeps the message.
 *
 * An API key never travels in the clear: with TLS configured, AUTH needs TLS first (smtp-server's
 * 538 before STARTTLS); without TLS the listener serves loopback clients only (local development)
 * and refuses every other client at connect, before it can send a key.
 *
 * Every listener records its figures in the origin's /metrics (docs/operations.md#health-readiness-and-metrics):
 * connections open and accepted, AUTH results, messages accepted, every 4xx/5xx reply by code (ours
 * and smtp-server's own), message sizes and the time from the end of DATA to the edge's 202.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from "smtp-server";
import type { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { createMetrics, type SubmissionMetrics } from "../ops/metrics.ts";
import { isLoopbackHost } from "../smtp/address-policy.ts";
import { toMailSend } from "./convert.ts";
import type { EdgeClient } from "./edge-client.ts";
import { createGuard, type GuardOptions } from "./guard.ts";
import { isSmtpReply, SmtpReply } from "./reply.ts";

export interface SubmissionServerOptions {
  host: string;
  /** The STARTTLS port (587); plaintext, loopback clients only, without `tls`. */
  port?: number;
  /** The implicit-TLS port (465); needs `tls`. */
  tlsPort?: number;
  tls?: { keyFile: string; certFile: string };
  /** Name in the greeting and the EHLO reply. */
  hostname: string;
  edge: EdgeClient;
  /** SIZE (RFC 1870): larger messages get 552 5.3.4. */
  maxMessageBytes: number;
  /** RCPT TO past this many get 452 4.5.3 (RFC 5321 §4.5.3.1.10: the client sends the rest again). */
  maxRecipients: number;
  limits: GuardOptions;
  idleTimeoutMs: number;
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
  /** The node's metrics (ops/metrics.ts); a private set when not given. */
  metrics?: SubmissionMetrics;
}

export interface SubmissionServer {
  /** Bound ports (null for a listener not configured). */
  port: number | null;
  tlsPort: number | null;
  close(): Promise<void>;
}

const API_KEY_USER = "apikey";

/** The `listener` label: the STARTTLS port (587) or the implicit-TLS port (465). */
type Listener = "starttls" | "implicit_tls";

/**
 * smtp-server's set of open connections, counting as it goes: each connection added is one more
 * open and accepted on its listener, each removed (the socket closed) one fewer open, and every
 * reply of 400 or more the connection sends is counted by its code. `send` is the one place a
 * connection writes a reply (smtp-server's SMTPConnection.send), so the count includes the refusals
 * smtp-server makes itself (530 before AUTH, 538 before STARTTLS, 552 at MAIL … SIZE=, syntax
 * errors, 421 at an idle timeout or shutdown) as well as ours.
 */
class CountedConnections extends Set<SMTPConnection> {
  constructor(
    private readonly listener: Listener,
    private readonly metrics: SubmissionMetrics,
  ) {
    super();
  }
  override add(connection: SMTPConnection): this {
    if (!this.has(connection)) {
      const send = connection.send;
      const refusals = this.metrics.submissionRefusals;
      connection.send = function (this: SMTPConnection, code, data, context) {
        if (code >= 400) refusals.inc({ code: String(code) });
        return send.call(this, code, data, context);
      };
      this.metrics.submissionConnectionsTotal.inc({ listener: this.listener });
    }
    super.add(connection);
    this.metrics.submissionConnections.set(this.size, { listener: this.listener });
    return this;
  }
  override delete(connection: SMTPConnection): boolean {
    const had = super.delete(connection);
    this.metrics.submissionConnections.set(this.size, { listener: this.listener });
    return had;
  }
}

/** What an authenticated session carries: the key (used as the Bearer token) and its digest. */
interface Authed {
  apiKey: string;
  keyId: string;
}

export async function startSubmissionServer(opts: SubmissionServerOptions): Promise<SubmissionServer> {
  if (opts.tlsPort !== undefined && !opts.tls) throw new Error("the implicit-TLS submission port needs TLS");
  const tls = opts.tls
    ? { key: readFileSync(opts.tls.keyFile), cert: readFileSync(opts.tls.certFile) }
    : undefined;
  const guard = createGuard(opts.limits);
  const sessions = new Map<string, Authed>();
  const metrics = opts.metrics ?? createMetrics();
  metrics.submissionMessages.inc({}, 0);

  const handlers = (listener: Listener): Partial<SMTPServerOptions> => ({
    onConnect(session, callback) {
      const ip = session.remoteAddress;
      if (!tls && !isLoopbackHost(ip)) {
        return callback(new SmtpReply(554, "5.7.0 This listener has no TLS and takes loopback clients only"));
      }
      if (guard.blocked(ip)) {
        return callback(
          new SmtpReply(421, "4.7.0 Too many failed authentications from your address, try again later"),
        );
      }
      callback();
    },

    onAuth(auth, session, reply) {
      const ip = session.remoteAddress;
      // The AUTH's result: success, failure (535: not a key that may send), error (454: the edge
      // could not be asked) or limited (421: the address is cooling down or the key holds its
      // connections; 538 without TLS).
      const callback: typeof reply = (err, response) => {
        const result = !err
          ? "success"
          : !isSmtpReply(err)
            ? "error"
            : err.responseCode === 535
              ? "failure"
              : err.responseCode === 454
                ? "error"
                : "limited";
        metrics.submissionAuth.inc({ listener, result });
        reply(err, response);
      };
      if (guard.blocked(ip)) {
        return callback(
          new SmtpReply(421, "4.7.0 Too many failed authentications from your address, try again later"),
        );
      }
      if (!session.secure && !isLoopbackHost(ip)) {
        // RFC 4954 §6: 538 encryption required. (onConnect already turns such clients away.)
        return callback(new SmtpReply(538, "5.7.11 Encryption required: use STARTTLS or port 465"));
      }
      // A credentials failure counts as one even when it is the one that blocks the address (421).
      const fail = (refusal: SmtpReply) =>
        guard.failed(ip).then((nowBlocked) => {
          metrics.submissionAuth.inc({ listener, result: "failure" });
          reply(
            nowBlocked
              ? new SmtpReply(421, "4.7.0 Too many failed authentications from your address, try again later")
              : refusal,
          );
        });
      const apiKey = auth.password ?? "";
      if (auth.username !== API_KEY_USER || !apiKey) {
        void fail(
          new SmtpReply(
            535,
            `5.7.8 Authentication credentials invalid: the user name is "${API_KEY_USER}" and the password an API key`,
          ),
        );
        return;
      }
      opts.edge.checkKey(apiKey).then(
        () => {
          const keyId = createHash("sha256").update(apiKey).digest("hex");
          if (!guard.acquire(keyId)) {
            return callback(
              new SmtpReply(421, "4.7.0 Too many connections for this API key, try again later"),
            );
          }
          guard.succeeded(ip);
          sessions.set(session.id, { apiKey, keyId });
          callback(null, { user: API_KEY_USER });
        },
        (err: unknown) => {
          if (isSmtpReply(err) && err.responseCode === 535) return void fail(err);
          callback(isSmtpReply(err) ? err : new SmtpReply(454, "4.7.0 Temporary authentication failure"));
        },
      );
    },

    onClose(session) {
      const authed = sessions.get(session.id);
      if (!authed) return;
      sessions.delete(session.id);
      guard.release(authed.keyId);
    },

    onRcptTo(_address, session, callback) {
      if (session.envelope.rcptTo.length >= opts.maxRecipients) {
        return callback(
          new SmtpReply(452, `4.5.3 Too many recipients: at most ${opts.maxRecipients} a message`),
        );
      }
      callback();
    },

    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      // smtp-server's count of the message's bytes (dot-unstuffed, the final CRLF included).
      const observeSize = () => metrics.submissionMessageBytes.observe(stream.byteLength);
      stream.on("data", (chunk: Buffer) => {
        // Keep reading past the limit (the client is still sending) but stop buffering.
        if (!stream.sizeExceeded) chunks.push(chunk);
      });
      stream.on("error", (err) => callback(err));
      stream.on("end", () => {
        observeSize();
        if (stream.sizeExceeded) {
          return callback(new SmtpReply(552, `5.3.4 Message too big: at most ${opts.maxMessageBytes} bytes`));
        }
        const endOfData = process.hrtime.bigint();
        submit(Buffer.concat(chunks), session).then(
          (message) => {
            metrics.submissionAcceptSeconds.observe(Number(process.hrtime.bigint() - endOfData) / 1e9);
            metrics.submissionMessages.inc();
            callback(null, message);
          },
          (err: unknown) => {
            if (isSmtpReply(err)) return callback(err);
            opts.log("error", "submission failed", {
              error: err instanceof Error ? err.message : String(err),
            });
            callback(new SmtpReply(451, "4.3.0 Local error, try again later"));
          },
        );
      });
    },
  });

  async function submit(raw: Buffer, session: SMTPServerSession): Promise<string> {
    const authed = sessions.get(session.id);
    if (!authed) throw new SmtpReply(530, "5.7.0 Authentication required");
    let parsed: ParsedMail;
    try {
      parsed = await simpleParser(raw, {
        // What the client wrote, nothing invented: no text made from the HTML, cid: links kept.
        skipHtmlToText: true,
        skipTextToHtml: true,
        skipImageLinks: true,
        skipTextLinks: true,
        keepCidLinks: true,
      });
    } catch (err) {
      throw new SmtpReply(550, `5.6.0 The message could not be parsed: ${(err as Error).message}`);
    }
    // Each address once (mail/send refuses a duplicate); the envelope decides who gets the message.
    const seen = new Set<string>();
    const rcptTo = session.envelope.rcptTo
      .map((r) => r.address)
      .filter((a) => !seen.has(a.toLowerCase()) && seen.add(a.toLowerCase()));
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
    const converted = toMailSend(parsed, { mailFrom, rcptTo });
    const message = await opts.edge.send(authed.apiKey, converted.json, converted.idempotencyKey);
    opts.log("info", "submission accepted", { recipients: rcptTo.length, reply: message });
    return message;
  }

  const common: SMTPServerOptions = {
    name: opts.hostname,
    banner: "ScaiSend SMTP submission",
    size: opts.maxMessageBytes,
    authMethods: ["PLAIN", "LOGIN"],
    logger: false,
    disableReverseLookup: true,
    socketTimeout: opts.idleTimeoutMs,
    closeTimeout: 10_000,
  };

  const servers: SMTPServer[] = [];
  async function listen(server: SMTPServer, listener: Listener, port: number): Promise<number> {
    server.connections = new CountedConnections(listener, metrics);
    metrics.submissionConnections.set(0, { listener });
    metrics.submissionConnectionsTotal.inc({ listener }, 0);
    await new Promise<void>((resolve, reject) => {
      server.server.once("error", reject);
      server.listen(port, opts.host, () => {
        server.server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => opts.log("warn", "submission SMTP error", { error: err.message }));
    servers.push(server);
    return (server.server.address() as AddressInfo).port;
  }

  let port: number | null = null;
  let tlsPort: number | null = null;
  try {
    if (opts.port !== undefined) {
      const server = new SMTPServer({
        ...common,
        ...handlers("starttls"),
        ...(tls
          ? { ...tls, allowInsecureAuth: false }
          : { disabledCommands: ["STARTTLS"], hideSTARTTLS: true, allowInsecureAuth: true }),
      });
      port = await listen(server, "starttls", opts.port);
    }
    if (opts.tlsPort !== undefined && tls) {
      tlsPort = await listen(
        new SMTPServer({ ...common, ...handlers("implicit_tls"), ...tls, secure: true }),
        "implicit_tls",
        opts.tlsPort,
      );
    }
  } catch (err) {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    throw err;
  }
  opts.log("info", "SMTP submission listening", { host: opts.host, port, tlsPort, tls: Boolean(tls) });
  return {
    port,
    tlsPort,
    close: () =>
      Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined),
  };
}
