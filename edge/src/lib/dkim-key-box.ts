/**
 * The one place that seals and opens a sender domain's DKIM private keys. Keys are sealed with
 * secret-box under the current SECRETS_KEY, bound to their domain and kind by the AAD: `dkim:<domain
 * id>` for the RSA key, `dkim-ed25519:<domain id>` for the Ed25519 one (dual signing), so a sealed
 * key copied onto another domain's row, or from one column to the other, does not open. The OriginHub calls
 * `openDkimPrivateKey` per outbox row; a key that cannot be opened throws a DkimKeyError naming the
 * domain and the reason, and the hub fails that one message with the error's text instead of
 * stalling its batch.
 *
 * Rotation and the outbox. An outbox entry snapshots the sealed key when the message is enqueued
 * (services/outbox-entry.ts), and the hub opens that snapshot at dispatch; re-sealing the domain rows
 * in D1 does not touch entries already queued. We keep it that way rather than look the key up by
 * domain id at dispatch: the outbox stays self-contained, so accepted mail keeps moving while D1 is
 * slow or down, and the hot dispatch path costs no D1 read per message. The price is an operator
 * rule: after a re-seal, the previous key stays in SECRETS_KEY_PREVIOUS until every entry enqueued
 * before it has left the outbox, which takes at most MAX_QUEUE_AGE_MS (a message older than that is
 * failed by the hub). docs/operations.md, "Rotating SECRETS_KEY", gives the procedure.
 */
import type { Config } from "../env.ts";
import { isSealedWithCurrent, open, seal, SealedSecretError, type Keyring } from "./secret-box.ts";

/** SECRETS_KEY seals and opens; SECRETS_KEY_PREVIOUS only opens. */
export function secretsKeyring(config: Pick<Config, "SECRETS_KEY" | "SECRETS_KEY_PREVIOUS">): Keyring {
  return { current: config.SECRETS_KEY, previous: config.SECRETS_KEY_PREVIOUS };
}

/** Which of a domain's keys: the RSA one every domain has, or the optional Ed25519 one. */
export type DkimKeyKind = "rsa" | "ed25519";

/**
 * The owner a domain's sealed key is bound to (AES-GCM additional data). The RSA key keeps the
 * label it always had; the Ed25519 key has its own, so the two columns cannot be swapped.
 */
export const dkimKeyAad = (domainId: string, kind: DkimKeyKind = "rsa"): string =>
  kind === "rsa" ? `dkim:${domainId}` : `dkim-ed25519:${domainId}`;

export function sealDkimPrivateKey(
  keys: Keyring,
  domainId: string,
  privateKeyPem: string,
  kind: DkimKeyKind = "rsa",
): Promise<string> {
  return seal(keys, privateKeyPem, dkimKeyAad(domainId, kind));
}

/** A DKIM key that cannot be opened; the message names the domain and why. */
export class DkimKeyError extends Error {
  override readonly name = "DkimKeyError";
  constructor(
    readonly domain: string,
    readonly reason: SealedSecretError["reason"],
    message: string,
  ) {
    super(message);
  }
}

/** What opening needs: the sealed value and the domain it belongs to. */
export interface SealedDkimKey {
  /** Absent only in outbox entries enqueued before keys were bound to their domain (`v1` seals). */
  domainId?: string | undefined;
  domain: string;
  privateKeySealed: string;
}

async function openFor(keys: Keyring, dkim: SealedDkimKey, kind: DkimKeyKind): Promise<string> {
  try {
    // Without a domain id (an old entry) only a v1 value can open; a v2 one fails as "tampered".
    return await open(keys, dkim.privateKeySealed, dkimKeyAad(dkim.domainId ?? "", kind));
  } catch (err) {
    if (!(err instanceof SealedSecretError)) throw err;
    const who = dkim.domainId ? `${dkim.domain} (${dkim.domainId})` : dkim.domain;
    const what = kind === "rsa" ? "DKIM key" : "Ed25519 DKIM key";
    throw new DkimKeyError(dkim.domain, err.reason, `${what} of ${who} cannot be opened: ${err.message}`);
  }
}

export async function openDkimPrivateKey(
  config: Config,
  dkim: SealedDkimKey & { selector?: string },
  kind: DkimKeyKind = "rsa",
): Promise<string> {
  return openFor(secretsKeyring(config), dkim, kind);
}

export type ResealOutcome =
  { kind: "current" } | { kind: "resealed"; sealed: string } | { kind: "failed"; error: string };

/**
 * Re-seals one domain's key under the keyring's current key (and binds a v1 value to its domain).
 * A value already sealed as v2 under the current key is left as it is.
 */
export async function resealDkimPrivateKey(
  keys: Keyring,
  dkim: Required<Pick<SealedDkimKey, "domainId">> & SealedDkimKey,
  kind: DkimKeyKind = "rsa",
): Promise<ResealOutcome> {
  // Opened even when already current: a current-key value bound to another domain is reported.
  let pem: string;
  try {
    pem = await openFor(keys, dkim, kind);
  } catch (err) {
    if (err instanceof DkimKeyError) return { kind: "failed", error: err.message };
    throw err;
  }
  if (await isSealedWithCurrent(keys, dkim.privateKeySealed)) return { kind: "current" };
  return { kind: "resealed", sealed: await sealDkimPrivateKey(keys, dkim.domainId, pem, kind) };
}
