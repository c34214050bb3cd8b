/**
 * The submission server's abuse limits (docs/smtp-submission.md#limits), in memory per process:
 *
 * - failed AUTH per client address: each failure is answered after a growing delay (a tarpit:
 *   n × `tarpitMs`, at most 10 s), and after `maxAuthFailures` within `cooldownMs` the address is
 *   refused (421, connection closed) until `cooldownMs` after its last failure;
 * - connections per API key: at most `maxConnectionsPerKey` authenticated sessions at once.
 */
export interface GuardOptions {
  maxAuthFailures: number;
  cooldownMs: number;
  tarpitMs: number;
  maxConnectionsPerKey: number;
}

export interface SubmissionGuard {
  /** True while the address is cooling down after too many failures. */
  blocked(address: string): boolean;
  /** Records a failure; resolves after the tarpit delay with whether the address is now blocked. */
  failed(address: string): Promise<boolean>;
  /** A successful AUTH clears the address's failures. */
  succeeded(address: string): void;
  /** Takes a connection slot for the key (its digest); false when it holds the maximum already. */
  acquire(keyId: string): boolean;
  release(keyId: string): void;
}

const MAX_TARPIT_MS = 10_000;

export function createGuard(opts: GuardOptions): SubmissionGuard {
  const failures = new Map<string, { count: number; last: number }>();
  const perKey = new Map<string, number>();

  const current = (address: string) => {
    const f = failures.get(address);
    if (f && Date.now() - f.last >= opts.cooldownMs) {
      failures.delete(address);
      return undefined;
    }
    return f;
  };

  return {
    blocked: (address) => (current(address)?.count ?? 0) >= opts.maxAuthFailures,
    async failed(address) {
      const f = current(address) ?? { count: 0, last: 0 };
      f.count += 1;
      f.last = Date.now();
      failures.set(address, f);
      // Keeps the table bounded under a spray from many addresses: forget the expired ones.
      if (failures.size > 10_000) for (const a of [...failures.keys()]) current(a);
      const delay = Math.min(f.count * opts.tarpitMs, MAX_TARPIT_MS);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      return f.count >= opts.maxAuthFailures;
    },
    succeeded: (address) => void failures.delete(address),
    acquire(keyId) {
      const n = perKey.get(keyId) ?? 0;
      if (n >= opts.maxConnectionsPerKey) return false;
      perKey.set(keyId, n + 1);
      return true;
    },
    release(keyId) {
      const n = (perKey.get(keyId) ?? 1) - 1;
      if (n <= 0) perKey.delete(keyId);
      else perKey.set(keyId, n);
    },
  };
}
