/**
 * DKIM key rotation with an overlap (docs/api/admin.md#rotating-the-dkim-key), for the RSA key and,
 * on a dual-signing domain, the Ed25519 one (`{"algorithm":"ed25519"}`, RFC 8463).
 *
 *  1. `rotate-dkim` makes a new key pair under the next selector (`scaisend2`, `scaisend3`, … for
 *     RSA; `scaisend-ed2`, … for Ed25519) and keeps it beside the active key as the pending one.
 *     Both records are listed in `dns_records`; mail goes on being signed with the active key alone.
 *  2. A verification that finds the pending key's record switches: the pending key becomes the
 *     active one of its algorithm (it signs all mail enqueued from then on) and the old key's
 *     private half is deleted. Its public record stays listed as `retiring` for
 *     DKIM_ROTATION_OVERLAP_S (default 7 days, longer than MAX_QUEUE_AGE_MS), so mail signed with it
 *     before the switch still verifies where it arrives.
 *  3. After that window the old record is listed as `removable`: it may be deleted from DNS.
 *
 * One rotation is pending at a time, whichever its algorithm: both use the `dkim_next_*` columns,
 * and the pending selector's prefix says which key it replaces. Signing with a key only once its
 * record is visible means a rotation never sends a signature receivers cannot check (RFC 6376
 * §3.6.1: the selector names the key). In DEV_MODE there is no DNS to publish to, so the switch
 * happens at once.
 */
import { AppError } from "../../../shared/errors.ts";
import type { Db } from "../db/client.ts";
import { type DomainRow, tenantDomains } from "../db/domains.ts";
import { sealDkimPrivateKey } from "../lib/dkim-key-box.ts";
import { generateDkimKeyPair, generateEd25519DkimKeyPair } from "../lib/dkim-keys.ts";
import type { Keyring } from "../lib/secret-box.ts";

/** The first selector; later ones are this plus 2, 3, … (the first rotation makes `scaisend2`: docs/api/admin.md#rotating-the-dkim-key). */
export const RSA_SELECTOR_BASE = "scaisend";
/** Ed25519 selectors are this plus a number that grows with each new key: scaisend-ed1, scaisend-ed2… */
export const ED25519_SELECTOR_PREFIX = "scaisend-ed";
/** The keys `rotate-dkim` can rotate. */
export const ROTATION_ALGORITHMS = ["rsa", "ed25519"] as const;
export type RotationAlgorithm = (typeof ROTATION_ALGORITHMS)[number];
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

/** Which key a selector names; the prefix is the only marker (pending and retired keys have no other). */
export const isEd25519Selector = (s: string | null): boolean =>
  s?.startsWith(ED25519_SELECTOR_PREFIX) ?? false;

const ed25519Number = (s: string | null): number => {
  const n = isEd25519Selector(s) ? Number(s!.slice(ED25519_SELECTOR_PREFIX.length)) : 0;
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
};

/** scaisend-ed1 first, then one more than the highest of `used` (a selector is never reused with another key). */
export function nextEd25519Selector(...used: (string | null)[]): string {
  return `${ED25519_SELECTOR_PREFIX}${Math.max(0, ...used.map(ed25519Number)) + 1}`;
}

/** One more than the highest selector the domain has used, so a selector is never reused with another key. */
export function nextRsaSelector(d: Pick<DomainRow, "dkimSelector" | "dkimRetiredKeys">): string {
  const used = [d.dkimSelector, ...(d.dkimRetiredKeys ?? []).map((k) => k.selector)].map(selectorNumber);
  return `${RSA_SELECTOR_BASE}${Math.max(1, ...used) + 1}`;
}

/** The columns that make the pending key the active one of its algorithm, and the old key a retired record. */
export function switchToPendingKey(d: DomainRow, now: number, overlapMs: number): Partial<DomainRow> {
  if (!d.dkimNextSelector || !d.dkimNextPublicKey || !d.dkimNextPrivateKeyEnc) {
    throw new Error(`domain ${d.id} has no pending DKIM key`);
  }
  const ed25519 = isEd25519Selector(d.dkimNextSelector);
  const old = ed25519
    ? { selector: d.dkimEd25519Selector, publicKey: d.dkimEd25519PublicKey }
    : { selector: d.dkimSelector, publicKey: d.dkimPublicKey };
  const retired: RetiredKey[] = [
    ...(old.selector && old.publicKey
      ? [{ selector: old.selector, public_key: old.publicKey, switched_at: now, retire_at: now + overlapMs }]
      : []),
    ...(d.dkimRetiredKeys ?? []),
  ].slice(0, MAX_RETIRED);
  const cleared = {
    dkimNextSelector: null,
    dkimNextPublicKey: null,
    dkimNextPrivateKeyEnc: null,
    dkimNextCreatedAt: null,
    dkimRetiredKeys: retired,
  };
  // The sealed value moves as it is: it was sealed under the AAD of the column it moves to
  // (`dkim:<domain id>` for RSA, `dkim-ed25519:<domain id>` for Ed25519; lib/dkim-key-box.ts).
  return ed25519
    ? {
        dkimEd25519Selector: d.dkimNextSelector,
        dkimEd25519PublicKey: d.dkimNextPublicKey,
        dkimEd25519PrivateKeyEnc: d.dkimNextPrivateKeyEnc,
        // Its record was just seen (or DEV_MODE, where there is no DNS): it signs from now on.
        dkimEd25519VerifiedAt: now,
        ...cleared,
      }
    : {
        dkimSelector: d.dkimNextSelector,
        dkimPublicKey: d.dkimNextPublicKey,
        dkimPrivateKeyEnc: d.dkimNextPrivateKeyEnc,
        ...cleared,
      };
}

/**
 * Starts a rotation: a new RSA-2048 key (or, with `ed25519`, a new Ed25519 key for a dual-signing
 * domain) under the next selector, pending until its record verifies. A rotation already pending is
 * a 409 (verify it first), so is an Ed25519 rotation on a domain without an Ed25519 key; in DEV_MODE
 * the switch is immediate.
 */
export async function startDkimRotation(
  deps: RotationDeps,
  d: DomainRow,
  algorithm: RotationAlgorithm = "rsa",
): Promise<DomainRow> {
  if (d.dkimNextSelector) {
    throw new AppError(
      "conflict",
      `A DKIM rotation is already pending for ${d.domain} (selector ${d.dkimNextSelector}): ` +
        "publish its record and verify the domain to complete it",
    );
  }
  if (algorithm === "ed25519" && !d.dkimEd25519PublicKey) {
    throw new AppError(
      "conflict",
      `${d.domain} has no Ed25519 key to rotate: add one with POST /api/admin/domains/${d.id}/dkim/ed25519`,
    );
  }
  const keys = algorithm === "ed25519" ? await generateEd25519DkimKeyPair() : await generateDkimKeyPair();
  const now = deps.now();
  const pending: DomainRow = {
    ...d,
    dkimNextSelector:
      algorithm === "ed25519"
        ? nextEd25519Selector(d.dkimEd25519Selector, ...(d.dkimRetiredKeys ?? []).map((k) => k.selector))
        : nextRsaSelector(d),
    dkimNextPublicKey: keys.publicKeyB64,
    dkimNextPrivateKeyEnc: await sealDkimPrivateKey(deps.secrets, d.id, keys.privateKeyPem, algorithm),
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
  const updated = await tenantDomains(deps.db, d.tenantId).updateDomain(d.id, patch, {
    dkimNextSelector: null,
  });
  if (!updated) {
    throw new AppError("conflict", `A DKIM rotation is already pending for ${d.domain}`);
  }
  return updated;
}

/** `retiring` until its window ends, `removable` after. */
export const retiredStatus = (k: RetiredKey, now: number): "retiring" | "removable" =>
  now < k.retire_at ? "retiring" : "removable";
