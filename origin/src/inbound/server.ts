/**
 * The inbound SMTP server: receives bounces (DSNs and the non-standard formats) and feedback loop
 * reports for the bounce domain(s) and the FBL address(es), classifies each (classify.ts) and hands
 * its events to the edge (forwarder.ts). docs/bounces.md describes what is recognised.
 *
 * What it accepts (RFC 5321 §4.5.1 asks every domain to take mail for postmaster):
 *  - `<prefix>+<message id>.<tag>@<bounce domain>` only when the VERP tag verifies; a forged or
 *    unknown token is refused at RCPT (550 5.1.1), never trusted;
 *  - `<prefix>@<bounce domain>` and `postmaster@<bounce domain>`, and each FBL address;
 *  - nothing else (550 5.7.1: this is no relay).
 * Limits: messages above `maxMessageBytes` get 552 5.3.4; per client IP at most `maxConnectionsPerIp`
 * at once and `connectionsPerMinute` new ones a minute (421 4.7.0); per connection at most
 * `maxMessagesPerConnection` messages and 50 recipients a message. No AUTH; STARTTLS only when a
 * certificate is configured.
 *
 * The reply to DATA says whether the report is safe: 250 only once the edge has acknowledged its
 * events (or it had none worth recording); 451 when the edge did not acknowledge within
 * `ackTimeoutMs` (the events stay queued and are re-sent, and the sender's retry is recorded once);
 * 452 when too many events already wait for the edge. So a report is never lost to a crash of this
 * process: until the 250, the sending MTA still holds it.
 */
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { SMTPServer, type SMTPServerSession } from "smtp-server";
import { decodeVerp } from "../delivery/verp.ts";
import { classifyInbound } from "./classify.ts";
import { toInboundEvents } from "./events.ts";
import type { InboundForwarder } from "./forwarder.ts";
import { InboundParseError, parseInbound } from "./parse.ts";

export interface InboundServerOptions {
  host: string;
  port: number;
  /** Name in the greeting and EHLO reply. */
  hostname: string;
  /** Bounce domains (lower case): VERP, bare-prefix and postmaster addresses are accepted there. */
  domains: string[];
  /** Feedback loop addresses (lower case), accepted as they are. */
  fblAddresses: string[];
  verp: { secret: string; prefix?: string };
  forwarder: InboundForwarder;
  maxMessageBytes: number;
  maxConnectionsPerIp: number;
  connectionsPerMinute: number;
  maxMessagesPerConnection: number;
  ackTimeoutMs: number;
  /**
   * How long a client may stay silent before the server answers 421 and closes: RFC 5321
   * §4.5.3.2.7 asks a server to wait at least 5 minutes (INBOUND_IDLE_TIMEOUT_MS, default 300,000).
   */
  idleTimeoutMs?: number;
  /** Called once per message taken or turned away at DATA, for /metrics (kind as classified). */
  onMessage?: (kind: string, outcome: "recorded" | "ignored" | "deferred" | "refused") => void;
  tls?: { keyFile: string; certFile: string };
  log: (level: "info" | "warn" | "error", msg: string, extra?: Record<string, unknown>) => void;
}

export interface InboundServer {
  port: number;
  /** Messages answered 250, by what they were (bounce, spam_report, auto_reply, delay, unknown). */
  readonly accepted: Record<string, number>;
  close(): Promise<void>;
}

const MAX_RECIPIENTS = 50;

function smtpError(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

export async function startInboundServer(opts: InboundServerOptions): Promise<InboundServer> {
  const prefix = (opts.verp.prefix ?? "bounces").toLowerCase();
  const domains = new Set(opts.domains.map((d) => d.toLowerCase()));
  const fbl = new Set(opts.fblAddresses.map((a) => a.toLowerCase()));
  const open = new Map<string, number>();
  /** New connections per IP in the current minute. */
  let windowStart = Date.now();
  let recent = new Map<string, number>();
  const messagesIn = new Map<string, number>();
  const accepted: Record<string, number> = {};

  const server = new SMTPServer({
    name: opts.hostname,
    banner: "ScaiSend bounce and feedback receiver",
    size: opts.maxMessageBytes,
    authOptional: true,
    disabledCommands: opts.tls ? ["AUTH"] : ["AUTH", "STARTTLS"],
    ...(opts.tls
      ? { key: readFileSync(opts.tls.keyFile), cert: readFileSync(opts.tls.certFile) }
      : { hideSTARTTLS: true }),
    logger: false,
    socketTimeout: opts.idleTimeoutMs ?? 300_000,
    closeTimeout: 10_000,

    onConnect(session, callback) {
      const ip = session.remoteAddress;
      const now = Date.now();
      if (now - windowStart >= 60_000) {
        windowStart = now;
        recent = new Map();
      }
      const count = (recent.get(ip) ?? 0) + 1;
      recent.set(ip, count);
      if (count > opts.connectionsPerMinute || (open.get(ip) ?? 0) >= opts.maxConnectionsPerIp) {
        opts.log("warn", "inbound connection refused: rate limit", { ip });
        return callback(smtpError(421, "4.7.0 Too many connections from your address, try again later"));
      }
      open.set(ip, (open.get(ip) ?? 0) + 1);
      // Counted here and released in onClose, so only connections past this point hold a slot.
      (session as SMTPServerSession & { counted?: boolean }).counted = true;
      callback();
    },

    onClose(session) {
      messagesIn.delete(session.id);
      if (!(session as SMTPServerSession & { counted?: boolean }).counted) return;
      const ip = session.remoteAddress;
      const n = (open.get(ip) ?? 1) - 1;
      if (n <= 0) open.delete(ip);
      else open.set(ip, n);
    },

    onMailFrom(_address, session, callback) {
      const n = (messagesIn.get(session.id) ?? 0) + 1;
      messagesIn.set(session.id, n);
      if (n > opts.maxMessagesPerConnection) {
        return callback(smtpError(421, "4.7.0 Too many messages on one connection, reconnect"));
      }
      if (opts.forwarder.full) {
        return callback(smtpError(452, "4.3.1 Too many reports waiting to be recorded, try again later"));
      }
      callback();
    },

    onRcptTo(address, session, callback) {
      // A throw here would escape smtp-server's handler and end the process: answer 451 instead.
      try {
        checkRecipient(address.address, session, callback);
      } catch (err) {
        opts.log("error", "inbound RCPT check failed", {
          error: err instanceof Error ? err.message : String(err),
        });
        callback(smtpError(451, "4.3.0 Local error, try again later"));
      }
    },

    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      let bytes = 0;
      stream.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes <= opts.maxMessageBytes) chunks.push(chunk);
      });
      stream.on("error", (err) => callback(err));
      stream.on("end", () => {
        if (stream.sizeExceeded) {
          return callback(smtpError(552, `5.3.4 Message too big, at most ${opts.maxMessageBytes} bytes`));
        }
        const raw = Buffer.concat(chunks);
        const envelope = {
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
        };
        handle(raw, envelope).then(
          (reply) =>
            reply.ok ? callback(null, reply.message) : callback(smtpError(reply.code, reply.message)),
          (err: unknown) => {
            opts.log("error", "inbound message failed", {
              error: err instanceof Error ? err.message : String(err),
            });
            callback(smtpError(451, "4.3.0 Local error, try again later"));
          },
        );
      });
    },
  });

  function checkRecipient(
    rawAddress: string,
    session: SMTPServerSession,
    callback: (err?: Error | null) => void,
  ): void {
    if (session.envelope.rcptTo.length >= MAX_RECIPIENTS) {
      return callback(smtpError(452, "4.5.3 Too many recipients"));
    }
    const addr = rawAddress.toLowerCase();
    if (fbl.has(addr)) return callback();
    const at = addr.lastIndexOf("@");
    const local = addr.slice(0, at);
    const domain = addr.slice(at + 1);
    if (at <= 0 || !domains.has(domain)) {
      return callback(
        smtpError(550, "5.7.1 Relaying denied: this server takes mail for its bounce domains only"),
      );
    }
    if (local === prefix || local === "postmaster") return callback();
    if (local.startsWith(`${prefix}+`)) {
      // Refused, never trusted: a token that does not verify names no message of ours.
      if (decodeVerp(rawAddress, opts.verp)) return callback();
      return callback(smtpError(550, "5.1.1 Unknown or badly signed bounce address"));
    }
    return callback(smtpError(550, "5.1.1 No such mailbox"));
  }

  async function handle(
    raw: Buffer,
    envelope: { mailFrom: string; rcptTo: string[] },
  ): Promise<{ ok: true; message: string } | { ok: false; code: number; message: string }> {
    let parsed;
    try {
      parsed = await parseInbound(raw);
    } catch (err) {
      if (err instanceof InboundParseError) {
        opts.onMessage?.("unparseable", "refused");
        return { ok: false, code: 550, message: `5.6.0 ${err.message}` };
      }
      throw err;
    }
    const receivedAt = Date.now();
    const classification = classifyInbound({ ...parsed, envelope }, { verp: opts.verp });
    const events = toInboundEvents(classification, { receivedAt, raw });
    const count = (kind: string) => (accepted[kind] = (accepted[kind] ?? 0) + 1);
    if (events.length === 0) {
      // Nothing to record (an auto-reply, a delay report, or no message of ours): accepted and dropped,
      // so no bounce of a bounce is sent.
      opts.log("info", "inbound message ignored", {
        kind: classification.kind,
        ...("why" in classification ? { why: classification.why } : {}),
        results: classification.results.length,
      });
      count(classification.kind);
      opts.onMessage?.(classification.kind, "ignored");
      return { ok: true, message: `Accepted, nothing to record (${classification.kind})` };
    }
    const acked = opts.forwarder.submit(events);
    if (!acked) {
      opts.onMessage?.(classification.kind, "deferred");
      return {
        ok: false,
        code: 452,
        message: "4.3.1 Too many reports waiting to be recorded, try again later",
      };
    }
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      acked.then(() => true),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), opts.ackTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (!done) {
      opts.log("warn", "inbound events not acknowledged in time; asking the sender to retry", {
        events: events.length,
      });
      opts.onMessage?.(classification.kind, "deferred");
      return { ok: false, code: 451, message: "4.3.0 Could not record the report yet, try again later" };
    }
    opts.log("info", "inbound events recorded", {
      kind: classification.kind,
      events: events.map((e) => ({ messageId: e.messageId, type: e.type, reason: e.reason })),
    });
    count(classification.kind);
    opts.onMessage?.(classification.kind, "recorded");
    return { ok: true, message: `Recorded ${events.length} event(s)` };
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => opts.log("warn", "inbound SMTP error", { error: err.message }));
  const port = (server.server.address() as AddressInfo).port;
  opts.log("info", "inbound SMTP server listening", {
    host: opts.host,
    port,
    domains: [...domains],
    fbl: [...fbl],
  });
  return {
    port,
    accepted,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
