/**
 * Encryption at rest for secrets we must be able to read back (DKIM private keys): AES-256-GCM
 * (NIST SP 800-38D) with a random 96-bit IV per value.
 *
 * Stored forms:
 *  - `v2.<kid>.<base64 iv>.<base64 ciphertext+tag>`: sealed with the key whose id is `<kid>`, with
 *    additional authenticated data (AAD) naming the value's owner (e.g. `dkim:<domain id>`). GCM
 *    authenticates the AAD, so a sealed value copied onto another owner's row does not open there.
 *  - `v1.<base64 iv>.<base64 ciphertext+tag>`: the first format, no key id and no AAD. Still read
 *    (by trying each configured key) so existing rows keep working; re-sealing upgrades them to v2.
 *
 * Key ids: the first 8 bytes (hex) of SHA-256 over a fixed label and the raw key. They tell an
 * operator (and the error messages) which SECRETS_KEY sealed a value without revealing anything
 * about a 256-bit random key. A keyring is the current key (seals and opens) plus previous keys
 * (open only), which is what makes a rotation without downtime possible: see docs/operations.md,
 * "Rotating SECRETS_KEY".
 */
import { base64ToBytes, bytesToBase64 } from "./base64.ts";

/** The current key seals; previous keys only open. Each is base64 of 32 bytes. */
export interface Keyring {
  current: string;
  previous?: readonly string[];
}

export type SealedSecretProblem = "malformed" | "unknown_key" | "wrong_key" | "tampered";

/** Why a sealed value does not open; `reason` is machine-readable, the message is for people. */
export class SealedSecretError extends Error {
  override readonly name = "SealedSecretError";
  constructor(
    readonly reason: SealedSecretProblem,
    message: string,
  ) {
    super(message);
  }
}

const KID_LABEL = new TextEncoder().encode("scaisend secrets key id\0");

interface LoadedKey {
  kid: string;
  key: CryptoKey;
}

// A handful of keys per isolate at most (current + previous), so the cache needs no bound.
const keyCache = new Map<string, Promise<LoadedKey>>();

function loadKey(secretsKeyB64: string): Promise<LoadedKey> {
  let loaded = keyCache.get(secretsKeyB64);
  if (!loaded) {
    loaded = (async () => {
      const raw = base64ToBytes(secretsKeyB64);
      if (raw.length !== 32) throw new Error("a secrets key must be base64 of exactly 32 bytes");
      const labelled = new Uint8Array(KID_LABEL.length + raw.length);
      labelled.set(KID_LABEL);
      labelled.set(raw, KID_LABEL.length);
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", labelled));
      const kid = Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
      const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
      return { kid, key };
    })();
    keyCache.set(secretsKeyB64, loaded);
    // A bad key must not stay cached as a rejected promise under a value that may be fixed.
    loaded.catch(() => keyCache.delete(secretsKeyB64));
  }
  return loaded;
}

const asKeyring = (keys: Keyring | string): Keyring => (typeof keys === "string" ? { current: keys } : keys);

/** The id of a key (16 hex digits), as it appears in `v2` values. */
export async function keyId(secretsKeyB64: string): Promise<string> {
  return (await loadKey(secretsKeyB64)).kid;
}

/** The key id a sealed value names, or null for a `v1` value (which names none). */
export function sealedKeyId(sealed: string): string | null {
  const parts = sealed.split(".");
  return parts[0] === "v2" && parts.length === 4 ? parts[1]! : null;
}

/** True when the value is already `v2` under the keyring's current key (re-sealing would change nothing). */
export async function isSealedWithCurrent(keys: Keyring | string, sealed: string): Promise<boolean> {
  return sealedKeyId(sealed) === (await keyId(asKeyring(keys).current));
}

/** Seals `plaintext` under the current key, bound to `aad` (the owner, e.g. `dkim:<domain id>`). */
export async function seal(keys: Keyring | string, plaintext: string, aad: string): Promise<string> {
  const { kid, key } = await loadKey(asKeyring(keys).current);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: new TextEncoder().encode(aad) },
    key,
    new TextEncoder().encode(plaintext),
  );
  return `v2.${kid}.${bytesToBase64(iv)}.${bytesToBase64(new Uint8Array(ct))}`;
}

/**
 * Opens a sealed value with whichever keyring key sealed it. `aad` must name the same owner it was
 * sealed for (ignored for `v1` values, which carry no binding). Throws SealedSecretError.
 */
export async function open(keys: Keyring | string, sealed: string, aad: string): Promise<string> {
  const ring = asKeyring(keys);
  const all = [ring.current, ...(ring.previous ?? [])];
  const parts = sealed.split(".");
  if (parts[0] === "v1" && parts.length === 3) {
    const iv = decode(parts[1]!);
    const ct = decode(parts[2]!);
    for (const k of all) {
      const pt = await tryDecrypt((await loadKey(k)).key, iv, ct, undefined);
      if (pt !== null) return pt;
    }
    throw new SealedSecretError(
      "wrong_key",
      "no configured key opens it (a v1 value, sealed before key ids: " +
        "put the key that sealed it in SECRETS_KEY_PREVIOUS)",
    );
  }
  if (parts[0] === "v2" && parts.length === 4) {
    const kid = parts[1]!;
    const iv = decode(parts[2]!);
    const ct = decode(parts[3]!);
    const loaded = await Promise.all(all.map(loadKey));
    const match = loaded.find((k) => k.kid === kid);
    if (!match) {
      throw new SealedSecretError(
        "unknown_key",
        `it was sealed with key id ${kid}, which is neither SECRETS_KEY (id ${loaded[0]!.kid}) ` +
          "nor in SECRETS_KEY_PREVIOUS",
      );
    }
    const pt = await tryDecrypt(match.key, iv, ct, new TextEncoder().encode(aad));
    if (pt !== null) return pt;
    throw new SealedSecretError(
      "tampered",
      `it does not authenticate under key id ${kid}: the value was altered, or it was sealed for ` +
        "another owner and copied here",
    );
  }
  throw new SealedSecretError("malformed", "it is not a sealed value (expected v1.… or v2.…)");
}

function decode(b64: string): Uint8Array<ArrayBuffer> {
  try {
    return base64ToBytes(b64);
  } catch {
    throw new SealedSecretError("malformed", "it is not a sealed value (bad base64)");
  }
}

async function tryDecrypt(
  key: CryptoKey,
  iv: Uint8Array<ArrayBuffer>,
  ct: Uint8Array<ArrayBuffer>,
  aad: BufferSource | undefined,
): Promise<string | null> {
  try {
    const pt = await crypto.subtle.decrypt(
      aad ? { name: "AES-GCM", iv, additionalData: aad } : { name: "AES-GCM", iv },
      key,
      ct,
    );
    return new TextDecoder().decode(pt);
  } catch {
    // GCM tag mismatch (wrong key, altered bytes or other AAD) or a bad IV length.
    return null;
  }
}
