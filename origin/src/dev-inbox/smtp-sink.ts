// SMTP sink: accepts any message from any sender to any recipient and hands the raw bytes on.
// No AUTH, no STARTTLS: it only listens on loopback and exists so the delivery engine can speak
// real SMTP in development.
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import type { SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import type { Envelope } from "./ingest.ts";

export interface SmtpSinkOptions {
  host: string;
  port: number;
  maxSize: number;
  /** Resolves with the id the message was stored under; a rejection becomes a 451. */
  onMessage: (raw: Buffer, envelope: Envelope) => Promise<string>;
  log: (msg: string, extra?: Record<string, unknown>) => void;
}

export interface SmtpSink {
  port: number;
  close(): Promise<void>;
}

class SmtpReply extends Error {
  constructor(
    message: string,
    readonly responseCode: number,
  ) {
    super(message);
  }
}

export async function startSmtpSink(opts: SmtpSinkOptions): Promise<SmtpSink> {
  const server = new SMTPServer({
    banner: "ScaiSend dev inbox",
    disabledCommands: ["AUTH", "STARTTLS"],
    authOptional: true,
    size: opts.maxSize,
    disableReverseLookup: true,
    logger: false,
    // close() waits this long for clients still mid-conversation before dropping them.
    closeTimeout: 1_000,
    onData(
      stream: SMTPServerDataStream,
      session: SMTPServerSession,
      callback: (err?: Error | null, message?: string) => void,
    ) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => {
        // Keep draining past the limit (the client is still sending) but stop buffering.
        if (!stream.sizeExceeded) chunks.push(chunk);
      });
      stream.on("error", (err: Error) => callback(err));
      stream.on("end", () => {
        if (stream.sizeExceeded) {
          callback(new SmtpReply(`Message exceeds the ${opts.maxSize} byte limit`, 552));
          return;
        }
        const envelope: Envelope = {
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
        };
        opts.onMessage(Buffer.concat(chunks), envelope).then(
          (id) => callback(null, `Message stored as ${id}`),
          (err: unknown) => {
            opts.log("dev inbox: failed to store message", {
              error: err instanceof Error ? err.message : String(err),
            });
            callback(new SmtpReply("Local error storing message", 451));
          },
        );
      });
    },
  });
  server.on("error", (err: Error) => opts.log("dev inbox: smtp error", { error: err.message }));

  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.server.off("error", reject);
      resolve();
    });
  });
  const port = (server.server.address() as AddressInfo).port;

  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
