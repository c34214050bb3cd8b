// Dev inbox: in development the origin delivers every outgoing message here instead of to real
// MX hosts (the role Mailpit plays for other stacks). An SMTP sink stores messages in a ring
// buffer, DKIM-verified against an injected resolver, and a small web page shows them.
import type { DNSResolver } from "mailauth";
import { ingestMessage } from "./ingest.ts";
import type { LinkCheckOptions } from "./link-check.ts";
import { startSmtpSink } from "./smtp-sink.ts";
import { MessageStore } from "./store.ts";
import type { StoredMessage } from "./types.ts";
import { startWeb } from "./web.ts";
import type { WebServer } from "./web.ts";

export type {
  AttachmentSummary,
  DkimResult,
  DkimSignatureResult,
  DkimSummary,
  HeaderLine,
  StoredMessage,
} from "./types.ts";
export { escapeHtml } from "./render.ts";
export { CONTENT_SECURITY_POLICY } from "./web.ts";

export interface DevInboxOptions {
  /** Interface for both listeners; default "127.0.0.1". */
  host?: string;
  /** 0 = ephemeral (the default). */
  smtpPort?: number;
  /** 0 = ephemeral (the default). */
  httpPort?: number;
  /** Ring buffer size; the oldest message is evicted beyond it. Default 500. */
  maxMessages?: number;
  /** Largest message accepted, in bytes; bigger ones get a 552. Default 30 MiB. */
  maxMessageBytes?: number;
  /** mailauth-style resolver used to verify DKIM; without it mailauth queries real DNS. */
  dkimResolver?: (name: string, rrtype: string) => Promise<string[][] | string[]>;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
  /** Link check settings (per-URL timeout, concurrency, limit); defaults in link-check.ts. */
  linkCheck?: LinkCheckOptions;
}

export interface DevInbox {
  smtpPort: number;
  httpPort: number;
  /** Base URL of the web page, e.g. "http://127.0.0.1:8025". */
  url: string;
  /** Newest first. */
  list(): StoredMessage[];
  get(id: string): StoredMessage | undefined;
  /** Removes one message; false when there is none with that id. */
  delete(id: string): boolean;
  clear(): void;
  close(): Promise<void>;
  /** Resolves with the newest stored match or the next matching arrival; rejects on timeout or close(). */
  waitFor(pred: (m: StoredMessage) => boolean, timeoutMs: number): Promise<StoredMessage>;
}

const DEFAULT_MAX_MESSAGE_BYTES = 30 * 1024 * 1024;

export async function startDevInbox(opts: DevInboxOptions = {}): Promise<DevInbox> {
  const host = opts.host ?? "127.0.0.1";
  const log = opts.log ?? (() => {});
  const resolver: DNSResolver | undefined = opts.dkimResolver;
  const store = new MessageStore(opts.maxMessages ?? 500);

  const smtp = await startSmtpSink({
    host,
    port: opts.smtpPort ?? 0,
    maxSize: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    log,
    onMessage: async (raw, envelope) => {
      const message = await ingestMessage(raw, envelope, resolver);
      store.add(message);
      log("dev inbox: message received", {
        id: message.id,
        from: envelope.mailFrom,
        to: envelope.rcptTo,
        subject: message.subject,
        dkim: message.dkim.result,
      });
      return message.id;
    },
  });

  let web: WebServer;
  try {
    web = await startWeb({
      host,
      port: opts.httpPort ?? 0,
      store,
      log,
      ...(opts.linkCheck ? { linkCheck: opts.linkCheck } : {}),
    });
  } catch (err) {
    await smtp.close();
    throw err;
  }

  const urlHost = host.includes(":") ? `[${host}]` : host;
  const url = `http://${urlHost}:${web.port}`;
  log("dev inbox: listening", { smtpPort: smtp.port, url });

  let closing: Promise<void> | undefined;
  return {
    smtpPort: smtp.port,
    httpPort: web.port,
    url,
    list: () => store.list(),
    get: (id) => store.get(id),
    delete: (id) => store.delete(id),
    clear: () => store.clear(),
    waitFor: (pred, timeoutMs) => store.waitFor(pred, timeoutMs),
    close: () => {
      closing ??= (async () => {
        store.close();
        await Promise.all([smtp.close(), web.close()]);
      })();
      return closing;
    },
  };
}
