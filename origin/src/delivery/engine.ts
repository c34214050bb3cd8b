/**
 * DeliveryJob in, one outcome per recipient out (Postal's SendResult idea): `deliver` never
 * throws, whatever fails becomes outcomes the edge can record and retry.
 *
 * Steps, each ending the job early with outcomes when it fails:
 *   1. build the MIME message and DKIM-sign it, once per job (every domain gets the same bytes);
 *   2. group recipients by domain: one SMTP transaction per domain, all in parallel;
 *   3. per domain: resolve MX (or use the smarthost), hand the message to the transport.
 */
import type { DeliveryJob, RecipientOutcome } from "../../../shared/link/protocol.ts";
import { buildMime } from "../compose/build-mime.ts";
import { signDkim } from "../compose/dkim.ts";
import { createMxResolver, type MxHost } from "../smtp/mx.ts";
import { createSmtpTransport, type SmtpTransportOptions, type TransportLog } from "../smtp/transport.ts";
import { classifyError } from "./classify.ts";
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
}

export interface DeliveryEngine {
  deliver(job: DeliveryJob): Promise<RecipientOutcome[]>;
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
  });
  const transport = createSmtpTransport(options);
  const log: TransportLog = options.log ?? (() => {});

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
    const mime = await buildMime(job);
    const raw = job.dkim ? await signDkim(mime, job.dkim) : mime;
    const returnPathDomain = options.returnPathDomain ?? job.dkim?.domain ?? domainOf(job.message.from.email);
    if (!returnPathDomain) throw new Error(`no return-path domain for sender ${job.message.from.email}`);
    return {
      raw,
      envelopeFrom: encodeVerp(job.messageId, { secret: options.verpSecret, domain: returnPathDomain }),
    };
  }

  async function hostsFor(domain: string): Promise<{ hosts: MxHost[]; port: number }> {
    if (options.smarthost) {
      const { host, port } = options.smarthost;
      return { hosts: [{ exchange: host, preference: 0, addresses: [host] }], port };
    }
    return { hosts: await mx.resolve(domain), port: options.smtpPort };
  }

  async function deliverToDomain(domain: string, recipients: string[], raw: Buffer, envelopeFrom: string) {
    const started = Date.now();
    try {
      const { hosts, port } = await hostsFor(domain);
      return await transport.deliver({ hosts, port, envelopeFrom, recipients, raw });
    } catch (err) {
      // MX failures (null MX, NXDOMAIN, SERVFAIL) land here; the transport itself does not throw.
      const verdict = classifyError(err);
      return recipients.map((recipient): RecipientOutcome => ({
        recipient,
        ...verdict,
        latencyMs: Date.now() - started,
      }));
    }
  }

  return {
    async deliver(job) {
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

      const perDomain = await Promise.all(
        [...byDomain].map(([domain, recipients]) =>
          deliverToDomain(domain, recipients, prepared.raw, prepared.envelopeFrom),
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
    async close() {
      await transport.close();
      mx.clearCache();
    },
  };
}
