/**
 * RSA DKIM key rotation with an overlap (docs/api/admin.md#rotating-the-dkim-key).
 *
 *  1. `rotate-dkim` makes a new key pair under the next selector (`scaisend2`, `scaisend3`, …) and
 *     keeps it beside the active key as the pending one. Both records are listed in `dns_records`;
 *     mail goes on being signed with the active key alone.
 *  2. A verification that finds the pending key's record switches: the pending key becomes the
 *     active one (it signs all mail enqueued from then on) and the old key's private half is
 *     deleted. Its public record stays listed as `retiring` for DKIM_ROTATION_OVERLAP_S (default
 *     7 days, longer than MAX_QUEUE_AGE_MS), so mail signed with it before the switch still
 *     verifies where it arrives.
 *  3. After that window the old record is listed as `removable`: it may be deleted from DNS.
 *
 * Signing with a key only once its record is visible means a rotation never sends a signature
 * receivers cannot check (RFC 6376 §3.6.1: the selector names the key). In DEV_MODE there is no
 * DNS to publish to, so the switch happens at once.
 */
import { AppError } from "../../../shared/errors.ts";
import type { Db } from "../db/client.ts";
import { updateDomain, type DomainRow } from "../db/domains.ts";
import { sealDkimPrivateKey } from "../lib/dkim-key-box.ts";
import { generateDkimKeyPair } from "../lib/dkim-keys.ts";
import type { Keyring } from "../lib/secret-box.ts";

/** The first selector; later ones are this plus 2, 3, … (the first rotation makes `scaisend2`: docs/api/admin.md#rotating-the-dkim-key). */
export const RSA_SELECTOR_BASE = "scaisend";
export const DEFAULT_ROTATION_OVERLAP_MS = 7 * 24 * 3600_000;
/** Retired keys kept in the list (the oldest removable ones drop off first). */
const MAX_RETIRED = 5;

export type RetiredKey = NonNullable<DomainRow["dkimRetiredKeys"]>[number];

export interface RotationDeps {
  db: Db;
  secrets: Keyring;
  devMode: boolean;
  now: () => number;
  /** How long a replaced key stays published; DEFAULT_ROTATION_OVERLAP_MS when absent. */
  rotationOverlapMs?: number | undefined;
}

const selectorNumber = (s: string): number => {
  if (s === RSA_SELECTOR_BASE) return 1;
  if (!s.startsWith(RSA_SELECTOR_BASE)) return 0;
  const n = Number(s.slice(RSA_SELECTOR_BASE.length));
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
};

/** One more than the highest selector the domain has used, so a selector is never reused with another key. */
export function nextRsaSelector(d: Pick<DomainRow, "dkimSelector" | "dkimRetiredKeys">): string {
  const used = [d.dkimSelector, ...(d.dkimRetiredKeys ?? []).map((k) => k.selector)].map(selectorNumber);
  return `${RSA_SELECTOR_BASE}${Math.max(1, ...used) + 1}`;
}

/** The columns that make the pending key the active one, and the old key a retired record. */
export function switchToPendingKey(
  d: DomainRow,
  now: number,
  overlapMs: number,
): Partial<DomainRow> & Pick<DomainRow, "dkimSelector" | "dkimPublicKey" | "dkimPrivateKeyEnc"> {
  if (!d.dkimNextSelector || !d.dkimNextPublicKey || !d.dkimNextPrivateKeyEnc) {
    throw new Error(`domain ${d.id} has no pending DKIM key`);
  }
  const retired: RetiredKey[] = [
    { selector: d.dkimSelector, public_key: d.dkimPublicKey, switched_at: now, retire_at: now + overlapMs },
    ...(d.dkimRetiredKeys ?? []),
  ].slice(0, MAX_RETIRED);
  return {
    dkimSelector: d.dkimNextSelector,
    dkimPublicKey: d.dkimNextPublicKey,
    // Same AAD (`dkim:<domain id>`) for both columns, so the sealed value moves as it is.
    dkimPrivateKeyEnc: d.dkimNextPrivateKeyEnc,
    dkimNextSelector: null,
    dkimNextPublicKey: null,
    dkimNextPrivateKeyEnc: null,
    dkimNextCreatedAt: null,
    dkimRetiredKeys: retired,
  };
}

/**
 * Starts a rotation: a new RSA-2048 key under the next selector, pending until its record verifies.
 * A rotation already pending is a 409 (verify it first); in DEV_MODE the switch is immediate.
 */
export async function startDkimRotation(deps: RotationDeps, d: DomainRow): Promise<DomainRow> {
  if (d.dkimNextSelector) {
    throw new AppError(
      "conflict",
      `A DKIM rotation is already pending for ${d.domain} (selector ${d.dkimNextSelector}): ` +
        "publish its record and verify the domain to complete it",
    );
  }
  const keys = await generateDkimKeyPair();
  const now = deps.now();
  const pending: DomainRow = {
    ...d,
    dkimNextSelector: nextRsaSelector(d),
    dkimNextPublicKey: keys.publicKeyB64,
    dkimNextPrivateKeyEnc: await sealDkimPrivateKey(deps.secrets, d.id, keys.privateKeyPem),
    dkimNextCreatedAt: now,
  };
  const patch = deps.devMode
    ? switchToPendingKey(pending, now, deps.rotationOverlapMs ?? DEFAULT_ROTATION_OVERLAP_MS)
    : {
        dkimNextSelector: pending.dkimNextSelector,
        dkimNextPublicKey: pending.dkimNextPublicKey,
        dkimNextPrivateKeyEnc: pending.dkimNextPrivateKeyEnc,
        dkimNextCreatedAt: now,
      };
  // Only if no other rotation started meanwhile (compare-and-set on the pending selector).
  const updated = await updateDomain(deps.db, d.tenantId, d.id, patch, { dkimNextSelector: null });
  if (!updated) {
    throw new AppError("conflict", `A DKIM rotation is already pending for ${d.domain}`);
  }
  return updated;
}

/** `retiring` until its window ends, `removable` after. */
export const retiredStatus = (k: RetiredKey, now: number): "retiring" | "removable" =>
  now < k.retire_at ? "retiring" : "removable";
