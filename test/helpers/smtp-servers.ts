/**
 * Real SMTP servers (smtp-server) on 127.0.0.1, port 0, for delivery tests:
 *  - startSinkServer: accepts everything and keeps each message with its envelope;
 *  - startFlakyServer: answers a 4xx at one stage for the first N tries, then behaves;
 *  - startRejectingServer: refuses chosen recipients at RCPT with a chosen reply.
 * Each can offer STARTTLS with a self-signed certificate made by the openssl CLI at test time.
 * Without `tls`, STARTTLS is disabled entirely (smtp-server would otherwise offer it with its
 * built-in test certificate). `tlsMaxVersion: "TLSv1.1"` makes a server that offers STARTTLS and
 * then fails every handshake (Node's client refuses anything below TLS 1.2), as old MTAs do;
 * `stallData` makes one that takes the message after DATA and never answers it; `dataDelayMs` makes a
 * slow one that answers each DATA that much later, and keeps the message only if the client is still
 * there to read the 250 (a receiver takes responsibility for a message by its reply, RFC 5321 §6.1;
 * a connection lost before it is what may make the sender deliver twice, RFC 1047).
 *
 * startScriptedServer is a plain TCP server speaking just enough SMTP by hand, for what smtp-server
 * cannot be made to do: stall at any step (the greeting, EHLO, MAIL, RCPT, the 354 to DATA, reading
 * the message data, the reply after "."), advertise PIPELINING or not, and log each command with the
 * number of replies still owed when it arrived (more than 0 = the client pipelined it, RFC 2920).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import type { SecureVersion } from "node:tls";
import { join } from "node:path";
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from "smtp-server";

export interface TlsCredentials {
  key: string;
  cert: string;
}

export interface ReceivedMessage {
  mailFrom: string;
  rcptTo: string[];
  raw: Buffer;
  /** Whether the session had been upgraded with STARTTLS when DATA arrived. */
  secure: boolean;
  /** When the server answered the message's DATA with 250 (Date.now()). */
  acceptedAt: number;
  /** The client's address as this server saw it (the origin's source address). */
  remoteAddress: string;
  /** The name the client gave in EHLO/HELO. */
  clientHostname: string;
}

export interface SmtpReply {
  code: number;
  message: string;
}

export interface TestSmtpServer {
  port: number;
  messages: ReceivedMessage[];
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Messages received after DATA and left unanswered (`stallData`). */
  readonly stalled: number;
  /** Messages received after DATA whose delayed reply is still to come (`dataDelayMs`). */
  readonly delaying: number;
  /** Delayed messages dropped because their client left before the reply (`dataDelayMs`). */
  readonly abandoned: number;
  close(): Promise<void>;
}

export interface SmtpBehaviour {
  /** Address to listen on (default 127.0.0.1; "::1" for IPv6 tests). */
  host?: string;
  tls?: TlsCredentials;
  /** Highest TLS version the server speaks after STARTTLS (below TLS 1.2 the handshake fails). */
  tlsMaxVersion?: SecureVersion;
  /** Never answer the message after DATA (for these recipients): the client waits until it gives up. */
  stallData?: boolean | ((rcptTo: string[]) => boolean);
  /** Answer each message's DATA this many ms after it arrived; dropped if the client left meanwhile. */
  dataDelayMs?: number;
  /** Reply to send instead of the greeting; null lets the session go on. */
  onConnect?(connectionIndex: number): SmtpReply | null;
  onRcpt?(address: string, attempt: number): SmtpReply | null;
  onData?(attempt: number): SmtpReply | null;
}

/** A short-lived self-signed certificate for `commonName`, made by openssl (no npm dependency). */
export function createSelfSignedCert(commonName = "mx.test"): TlsCredentials {
  const dir = mkdtempSync(join(tmpdir(), "scaisend-cert-"));
  try {
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        `/CN=${commonName}`,
      ],
      { stdio: "ignore" },
    );
    return { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const replyError = (reply: SmtpReply) =>
  Object.assign(new Error(reply.message), { responseCode: reply.code });

export async function startSmtpServer(behaviour: SmtpBehaviour = {}): Promise<TestSmtpServer> {
  const messages: ReceivedMessage[] = [];
  let connections = 0;
  let stalled = 0;
  let delaying = 0;
  let abandoned = 0;
  const closedSessions = new Set<string>();
  let rcptAttempts = 0;
  let dataAttempts = 0;
  const server = new SMTPServer({
    logger: false,
    // AUTH is not part of MX delivery; STARTTLS only when the test asked for it.
    disabledCommands: behaviour.tls ? ["AUTH"] : ["AUTH", "STARTTLS"],
    ...(behaviour.tls ? { key: behaviour.tls.key, cert: behaviour.tls.cert } : {}),
    ...(behaviour.tlsMaxVersion ? { minVersion: "TLSv1" as const, maxVersion: behaviour.tlsMaxVersion } : {}),
    closeTimeout: 200,
    onConnect(_session: SMTPServerSession, callback: (err?: Error | null) => void) {
      // Count every connection, whether or not the test scripted the greeting.
      const index = connections++;
      const reply = behaviour.onConnect?.(index) ?? null;
      callback(reply ? replyError(reply) : null);
    },
    onRcptTo(
      address: SMTPServerAddress,
      _session: SMTPServerSession,
      callback: (err?: Error | null) => void,
    ) {
      const reply = behaviour.onRcpt?.(address.address, rcptAttempts++) ?? null;
      callback(reply ? replyError(reply) : null);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        const stall = behaviour.stallData;
        if (
          stall === true ||
          (typeof stall === "function" && stall(session.envelope.rcptTo.map((r) => r.address)))
        ) {
          stalled++;
          return; // no callback: the reply to DATA never comes
        }
        const reply = behaviour.onData?.(dataAttempts++) ?? null;
        if (reply) return callback(replyError(reply));
        const mailFrom = session.envelope.mailFrom;
        const accept = () => {
          messages.push({
            mailFrom: mailFrom ? mailFrom.address : "",
            rcptTo: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks),
            secure: session.secure,
            acceptedAt: Date.now(),
            remoteAddress: session.remoteAddress,
            clientHostname: session.hostNameAppearsAs,
          });
          callback(null);
        };
        if (!behaviour.dataDelayMs) return accept();
        delaying++;
        setTimeout(() => {
          delaying--;
          if (closedSessions.has(session.id)) {
            abandoned++; // nobody is left to read the 250: the message was never accepted
            return;
          }
          accept();
        }, behaviour.dataDelayMs);
      });
    },
    ...(behaviour.dataDelayMs
      ? {
          onClose(session: SMTPServerSession) {
            closedSessions.add(session.id);
          },
        }
      : {}),
  });
  server.on("error", () => {}); // client resets during tests are expected, not failures
  await new Promise<void>((resolve) => server.listen(0, behaviour.host ?? "127.0.0.1", () => resolve()));
  return {
    port: (server.server.address() as AddressInfo).port,
    messages,
    get connections() {
      return connections;
    },
    get stalled() {
      return stalled;
    },
    get delaying() {
      return delaying;
    },
    get abandoned() {
      return abandoned;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export const startSinkServer = (options: { tls?: TlsCredentials } = {}) => startSmtpServer(options);

/** Temporary failure at `stage` for the first `failures` tries (greylisting, a busy MX), then normal. */
export function startFlakyServer(options: {
  failures: number;
  stage: "connect" | "rcpt" | "data";
  reply?: SmtpReply;
  tls?: TlsCredentials;
}): Promise<TestSmtpServer> {
  const reply = options.reply ?? { code: 451, message: "4.7.1 Greylisted, try again later" };
  const fail = (attempt: number) => (attempt < options.failures ? reply : null);
  return startSmtpServer({
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.stage === "connect" ? { onConnect: fail } : {}),
    ...(options.stage === "rcpt" ? { onRcpt: (_address: string, attempt: number) => fail(attempt) } : {}),
    ...(options.stage === "data" ? { onData: fail } : {}),
  });
}

/** Refuses the recipients `reject` picks (all by default) at RCPT with `reply`. */
export function startRejectingServer(options: {
  reply: SmtpReply;
  reject?: (address: string) => boolean;
  tls?: TlsCredentials;
}): Promise<TestSmtpServer> {
  return startSmtpServer({
    ...(options.tls ? { tls: options.tls } : {}),
    onRcpt: (address) => ((options.reject ?? (() => true))(address) ? options.reply : null),
  });
}

/** Where startScriptedServer stops answering (or, for "dataBlock", stops reading). */
export type ScriptedStall = "greeting" | "ehlo" | "mail" | "rcpt" | "data" | "dataBlock" | "dataEnd";

export interface ScriptedCommand {
  /** The command line as received (without CRLF). */
  line: string;
  /** Replies owed by the server when the command was read: above 0 only for a pipelining client. */
  owed: number;
  connection: number;
}

export interface ScriptedServer {
  port: number;
  commands: ScriptedCommand[];
  /** Messages taken whole (after the "." line), with their envelopes. */
  messages: { mailFrom: string; rcptTo: string[]; size: number }[];
  readonly connections: number;
  /** Resolves once a session has reached the stall (the step is waiting on the server). */
  stalled: Promise<void>;
  close(): Promise<void>;
}

export async function startScriptedServer(
  options: {
    /** Stop at this step in every session. */
    stallAt?: ScriptedStall;
    /** Advertise PIPELINING in the EHLO reply (default true). */
    pipelining?: boolean;
    /** Wait this long before the greeting. */
    greetingDelayMs?: number;
  } = {},
): Promise<ScriptedServer> {
  const commands: ScriptedCommand[] = [];
  const messages: ScriptedServer["messages"] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  let markStalled: () => void = () => {};
  const stalled = new Promise<void>((resolve) => (markStalled = resolve));
  const stallAt = options.stallAt;
  const server = createServer((socket) => {
    const index = connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = "";
    let inData = false;
    let dataBytes = 0;
    let owed = 0;
    let stopped = false;
    let envelope = { mailFrom: "", rcptTo: [] as string[] };
    // Replies of one chunk go out after the whole chunk was read, so commands pipelined in it are
    // seen before any of their replies (how `owed` tells pipelining apart).
    const outbox: string[] = [];
    const reply = (text: string) => {
      owed++;
      outbox.push(text);
    };
    const stall = () => {
      stopped = true;
      markStalled();
    };
    const flush = () =>
      setImmediate(() => {
        if (outbox.length === 0 || socket.destroyed) return;
        socket.write(outbox.map((r) => `${r}\r\n`).join(""));
        owed -= outbox.length;
        outbox.length = 0;
      });
    const command = (line: string) => {
      commands.push({ line, owed, connection: index });
      const verb = line.split(" ")[0]!.toUpperCase();
      if (verb === "EHLO" || verb === "HELO") {
        if (stallAt === "ehlo") return stall();
        const ext = options.pipelining === false ? [] : ["PIPELINING"];
        const lines = ["mx.scripted.test", ...ext, "8BITMIME"];
        return reply(lines.map((l, i) => `250${i === lines.length - 1 ? " " : "-"}${l}`).join("\r\n"));
      }
      if (verb === "MAIL") {
        if (stallAt === "mail") return stall();
        envelope = { mailFrom: /<([^>]*)>/.exec(line)?.[1] ?? "", rcptTo: [] };
        return reply("250 2.1.0 Ok");
      }
      if (verb === "RCPT") {
        if (stallAt === "rcpt") return stall();
        envelope.rcptTo.push(/<([^>]*)>/.exec(line)?.[1] ?? "");
        return reply("250 2.1.5 Ok");
      }
      if (verb === "DATA") {
        if (stallAt === "data") return stall();
        inData = true;
        dataBytes = 0;
        reply("354 End data with <CR><LF>.<CR><LF>");
        if (stallAt === "dataBlock") {
          // Take nothing more: the client's sends stop completing once the buffers are full.
          flush();
          socket.pause();
          stall();
        }
        return;
      }
      if (verb === "RSET") return reply("250 2.0.0 Ok");
      if (verb === "QUIT") {
        reply("221 2.0.0 Bye");
        flush();
        setImmediate(() => socket.end());
        return;
      }
      reply("502 5.5.2 Command not recognized");
    };
    socket.on("data", (chunk: Buffer) => {
      if (stopped) return;
      buffer += chunk.toString("latin1");
      for (;;) {
        if (stopped) break; // the replies owed before the stall still go out
        if (inData) {
          const end = buffer.indexOf("\r\n.\r\n");
          if (end < 0) {
            // Keep the tail that may hold the start of the terminator.
            dataBytes += Math.max(0, buffer.length - 4);
            buffer = buffer.slice(Math.max(0, buffer.length - 4));
            break;
          }
          dataBytes += end + 2;
          buffer = buffer.slice(end + 5);
          inData = false;
          if (stallAt === "dataEnd") {
            stall();
            break;
          }
          messages.push({ ...envelope, size: dataBytes });
          reply("250 2.0.0 Ok: queued");
          continue;
        }
        const eol = buffer.indexOf("\r\n");
        if (eol < 0) break;
        const line = buffer.slice(0, eol);
        buffer = buffer.slice(eol + 2);
        command(line);
      }
      flush();
    });
    const greet = () => {
      if (socket.destroyed) return;
      if (stallAt === "greeting") return stall();
      socket.write("220 mx.scripted.test ESMTP\r\n");
    };
    if (options.greetingDelayMs) setTimeout(greet, options.greetingDelayMs);
    else greet();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    commands,
    messages,
    get connections() {
      return connections;
    },
    stalled,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
