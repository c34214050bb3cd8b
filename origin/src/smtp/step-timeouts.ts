/**
 * RFC 5321 §4.5.3.2 timeouts on every step of an SMTP client session, over nodemailer's
 * SMTPConnection.
 *
 * nodemailer bounds the TCP connect (`connectionTimeout`), the greeting and the STARTTLS handshake
 * (`greetingTimeout`, cut short by what is left of `connectionTimeout`), and otherwise only
 * inactivity on the socket (`socketTimeout`, one value for every step). RFC 5321 asks for a timer per
 * reply the client waits for, with different lengths: the 10 minutes a server may take to accept a
 * message after "." would be far too long for a MAIL FROM, and one inactivity value cannot be both.
 * `StepTimedConnection` is a narrow subclass that adds them, watching only what the library already
 * funnels through one place:
 *  - every command goes out through `_sendCommand`: its verb names the reply awaited next (with
 *    PIPELINING, MAIL, RCPT… and DATA go out together and are awaited in order, RFC 2920 §3.1);
 *  - every complete reply is stored in `lastServerResponse` before its handler runs: the oldest
 *    awaited step is answered, and the timer moves on to the next one;
 *  - the message body goes out through `_createSendStream`: while the socket has not taken it all
 *    the data-block timer runs (restarted on each 'drain'), then the timer for the reply to ".".
 *    A Buffer message (all the transport sends) is written as its DATA bytes in one socket write
 *    (smtp-data.ts: the library's DataStream output without the stream), others through the stream;
 *  - the greeting and the STARTTLS handshake keep nodemailer's own phase timer, whose length comes
 *    from `_remainingSetupTime`: here the greeting (or EHLO) timeout instead of what is left of the
 *    TCP connect timeout, so a slow greeting gets its 5 minutes and a dead address still fails fast.
 * A timer that fires fails the session through the library's own error path (`_onError`), with
 * code ETIMEDOUT, the step's command (`MAIL FROM`, `RCPT TO`, `DATA`, `end of DATA`, …) as the
 * error's `command`, and a message naming the step, so smtp/transport.ts classifies it like any
 * other failure at that step (a setup step moves on to the next MX address, a later one defers).
 *
 * Every timer is capped by the job's deadline (`deadlineAt`, set by the transport for each job that
 * uses the session) plus `DEADLINE_TIMER_MARGIN_MS`: the transport's own deadline timer closes the
 * session at the deadline and must win that race (smtp/transport.ts, `capped`).
 *
 * Internals read here (`_sendCommand`, `_createSendStream`, `_remainingSetupTime`, `_onError`,
 * `_socket`, `upgrading`) are nodemailer 10's; test/origin/smtp-timeouts-rfc5321.test.ts stalls a
 * real server at each step, so a library change that breaks one of them fails there.
 */
import SMTPConnection from "nodemailer/lib/smtp-connection/index.js";
import type { Socket } from "node:net";
import type { Readable } from "node:stream";
import { smtpData } from "./smtp-data.ts";

/** The timers of RFC 5321 §4.5.3.2, in ms. */
export interface SmtpStepTimeouts {
  /** Initial 220 (§4.5.3.2.1). */
  greetingMs: number;
  /** Replies to EHLO/HELO, STARTTLS (and its handshake), RSET and QUIT: not named by the RFC; Postfix's smtp_helo_timeout. */
  heloMs: number;
  /** MAIL FROM (§4.5.3.2.2). */
  mailMs: number;
  /** Each RCPT TO (§4.5.3.2.3). */
  rcptMs: number;
  /** The 354 to DATA (§4.5.3.2.4). */
  dataInitMs: number;
  /** A send of message data not completing (§4.5.3.2.5). */
  dataBlockMs: number;
  /** The reply after "." (§4.5.3.2.6). */
  dataDoneMs: number;
}

/** The RFC's values. */
export const RFC5321_TIMEOUTS: Readonly<SmtpStepTimeouts> = Object.freeze({
  greetingMs: 5 * 60_000,
  heloMs: 5 * 60_000,
  mailMs: 5 * 60_000,
  rcptMs: 5 * 60_000,
  dataInitMs: 2 * 60_000,
  dataBlockMs: 3 * 60_000,
  dataDoneMs: 10 * 60_000,
});

/** How much later than the job deadline a step timer may fire (the deadline's own timer wins). */
export const DEADLINE_TIMER_MARGIN_MS = 250;

type Step = { key: keyof SmtpStepTimeouts; command: string; what: string };

const STEPS = {
  helo: { key: "heloMs", command: "EHLO", what: "the reply to EHLO" },
  starttls: { key: "heloMs", command: "STARTTLS", what: "the reply to STARTTLS" },
  mail: { key: "mailMs", command: "MAIL FROM", what: "the reply to MAIL FROM" },
  rcpt: { key: "rcptMs", command: "RCPT TO", what: "the reply to RCPT TO" },
  data: { key: "dataInitMs", command: "DATA", what: "the 354 reply to DATA" },
  block: { key: "dataBlockMs", command: "DATA", what: "the server to take the message data" },
  done: { key: "dataDoneMs", command: "end of DATA", what: 'the reply after the final "."' },
  other: { key: "heloMs", command: "", what: "the reply to" },
} satisfies Record<string, Step>;

function stepOf(line: string): Step {
  const verb = line.slice(0, line.indexOf(" ") >>> 0).toUpperCase();
  switch (verb) {
    case "EHLO":
    case "HELO":
    case "LHLO":
      return { ...STEPS.helo, command: verb };
    case "STARTTLS":
      return STEPS.starttls;
    case "MAIL":
      return STEPS.mail;
    case "RCPT":
      return STEPS.rcpt;
    case "DATA":
      return STEPS.data;
    case ".":
      return STEPS.done;
    default:
      return { ...STEPS.other, command: verb, what: `the reply to ${verb}` };
  }
}

/** The nodemailer internals this subclass builds on (see the header). */
interface Internals {
  _sendCommand(str: string | Buffer, logStr?: string): void;
  _createSendStream(callback: unknown): NodeJS.ReadableStream;
  _remainingSetupTime(): number;
  _onError(err: Error, type: string, data: unknown, command: string): void;
  _socket: Socket | false;
  upgrading?: boolean;
}
const base = SMTPConnection.prototype as unknown as Internals;

/** More nodemailer internals, for a Buffer body (`_createSendStream`), as its non-LMTP path does. */
interface Sending {
  options: { lmtp?: boolean; debug?: boolean };
  _responseActions: Array<(str: string) => void>;
  _actionSMTPStream(str: string, callback: unknown): void;
}

export type StepTimedOptions = SMTPConnection.Options & {
  stepTimeouts: SmtpStepTimeouts;
  deadlineAt?: number;
};

export class StepTimedConnection extends SMTPConnection {
  /** The job deadline the session works for now (Unix ms); the transport sets it per job. */
  deadlineAt: number | undefined;
  private readonly stepTimeouts: SmtpStepTimeouts;
  /** Replies awaited, oldest first. */
  private awaiting: Step[] = [];
  /** The message body is still being handed to the socket (the data-block timer runs). */
  private writingData = false;
  /** Counts message bodies sent on this session, so a body's drain watcher knows when it is stale. */
  private dataPhase = 0;
  private stepTimer: NodeJS.Timeout | undefined;
  private reply: unknown = false;
  /** The message being sent is a Buffer (see `send`). */
  private bufferBody = false;

  constructor(options: StepTimedOptions) {
    const { stepTimeouts, deadlineAt, ...rest } = options;
    super(rest);
    this.stepTimeouts = stepTimeouts;
    this.deadlineAt = deadlineAt;
    this.once("end", () => this.stopTimer());
  }

  /** A step's timeout, capped by the job deadline (see the header). */
  timeoutFor(key: keyof SmtpStepTimeouts): number {
    const ms = this.stepTimeouts[key];
    if (this.deadlineAt === undefined) return Math.max(1, ms);
    return Math.max(1, Math.min(ms, this.deadlineAt - Date.now() + DEADLINE_TIMER_MARGIN_MS));
  }

  /** @internal Called for every complete reply (the `lastServerResponse` accessor below). */
  noteReply(value: unknown): void {
    this.reply = value;
    if (value === false || this.awaiting.length === 0) return;
    this.awaiting.shift();
    this.writingData = false;
    this.armTimer();
  }

  /** @internal */
  readReply(): unknown {
    return this.reply;
  }

  override close(): void {
    this.stopTimer();
    this.awaiting = [];
    super.close();
  }

  /** @internal nodemailer: every command goes out here. */
  _sendCommand(str: string | Buffer, logStr?: string): void {
    this.awaiting.push(stepOf(String(str)));
    if (this.awaiting.length === 1) this.armTimer();
    base._sendCommand.call(this, str, logStr);
  }

  override send(
    envelope: SMTPConnection.Envelope,
    message: string | Buffer | Readable,
    done: (err: SMTPConnection.SMTPError | null, info: SMTPConnection.SentMessageInfo) => void,
  ): void {
    this.bufferBody = Buffer.isBuffer(message);
    super.send(envelope, message, done);
  }

  /**
   * @internal nodemailer: the message body after the 354. A Buffer (what the transport sends) goes
   * out as its DATA bytes (smtp-data.ts: the library's DataStream output, built in one pass) in ONE
   * socket write with the final "."; anything else through the library's stream.
   */
  _createSendStream(callback: unknown): NodeJS.ReadableStream {
    const self = this as unknown as Internals & Sending;
    const socket = self._socket;
    if (!this.bufferBody || !socket || self.options.lmtp || self.options.debug)
      return this.streamedBody(callback);
    self._responseActions.push((str: string) => self._actionSMTPStream(str, callback));
    this.awaiting.push(STEPS.done);
    this.writingData = true;
    const phase = ++this.dataPhase;
    this.armTimer();
    const chunks: Buffer[] = [];
    // What SMTPConnection.send uses of its data stream for a Buffer message: write, end, outByteCount.
    const body = {
      outByteCount: 0,
      write: (chunk: Buffer | string) => {
        chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
        return true;
      },
      end: () => {
        const data = smtpData(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
        body.outByteCount = data.length;
        // A socket that is gone fails the send through the library's own close/error handling.
        if (socket.destroyed) return;
        if (socket.write(data) || socket.writableLength === 0) {
          this.writingData = false;
          this.armTimer();
          return;
        }
        // More than the socket buffers: the data-block timer runs until it has taken it all.
        const stop = () => {
          socket.removeListener("drain", drained);
          this.removeListener("end", stop);
        };
        const drained = () => {
          if (!this.writingData || this.dataPhase !== phase) return stop();
          if (socket.writableLength > 0) return void this.armTimer();
          this.writingData = false;
          stop();
          this.armTimer();
        };
        socket.on("drain", drained);
        this.once("end", stop);
      },
    };
    return body as unknown as NodeJS.ReadableStream;
  }

  /** The library's data stream (a stream message, LMTP, debug logging). */
  private streamedBody(callback: unknown): NodeJS.ReadableStream {
    const socket = (this as unknown as Internals)._socket;
    // The body and the final "." leave in one write, not two: the library pipes them as separate
    // chunks, and each socket write is a system call (the origin's CPU profile had the second one at
    // about 4 % of its busy time). The bytes and their order are the same.
    if (socket) socket.cork();
    const stream = base._createSendStream.call(this, callback);
    this.awaiting.push(STEPS.done);
    this.writingData = true;
    const phase = ++this.dataPhase;
    this.armTimer();
    // The watcher belongs to this one message: a reused session sends many, and a watcher left on the
    // socket after its body was written would pile up (one more closure run per 'drain' per message).
    const stopWatching = () => {
      if (socket) socket.removeListener("drain", drained);
      this.removeListener("end", stopWatching);
    };
    const drained = () => {
      if (!this.writingData || this.dataPhase !== phase) return stopWatching();
      if (socket && socket.writableLength > 0) return void this.armTimer(); // progress: restart
      this.writingData = false;
      stopWatching();
      this.armTimer();
    };
    if (socket) {
      socket.on("drain", drained);
      this.once("end", stopWatching);
    }
    // A corked socket never drains: once the body fills its buffer, the pipe from nodemailer's data
    // stream waits for a 'drain' that would never come, and the message stalls until the deadline.
    // So the cork holds only while the whole body fits (one write for small messages, as above).
    if (socket) {
      stream.on("data", () => {
        if (socket.writableCorked > 0 && socket.writableLength >= socket.writableHighWaterMark)
          socket.uncork();
      });
    }
    stream.once("end", () => {
      if (socket && socket.writableCorked > 0) socket.uncork();
      setImmediate(drained);
    });
    return stream;
  }

  /** @internal nodemailer: the length of the greeting and STARTTLS-handshake phases. */
  _remainingSetupTime(): number {
    return this.timeoutFor((this as unknown as Internals).upgrading ? "heloMs" : "greetingMs");
  }

  private stopTimer(): void {
    clearTimeout(this.stepTimer);
    this.stepTimer = undefined;
  }

  private armTimer(): void {
    this.stopTimer();
    const step = this.writingData ? STEPS.block : this.awaiting[0];
    if (!step) return;
    const ms = this.timeoutFor(step.key);
    this.stepTimer = setTimeout(() => {
      this.stepTimer = undefined;
      const err = new Error(`timed out after ${formatMs(ms)} waiting for ${step.what} (RFC 5321 §4.5.3.2)`);
      (this as unknown as Internals)._onError(err, "ETIMEDOUT", false, step.command);
    }, ms);
    // The socket keeps the process alive while a session is in use; the timer need not.
    this.stepTimer.unref();
  }
}

// nodemailer stores each complete reply in `lastServerResponse` before its handler runs (see the
// header). An accessor on the prototype, as the library's type declares it a plain property.
Object.defineProperty(StepTimedConnection.prototype, "lastServerResponse", {
  get(this: StepTimedConnection) {
    return this.readReply();
  },
  set(this: StepTimedConnection, value: unknown) {
    this.noteReply(value);
  },
});

function formatMs(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
