/**
 * Encryption at rest for secrets we must be able to read back (DKIM private keys):
 * AES-256-GCM with a random 96-bit IV per value, key from the SECRETS_KEY secret.
 * Stored form: "v1.<base64 iv>.<base64 ciphertext+tag>" so the scheme can change later.
 */
import { base64ToBytes, bytesToBase64 } from "./base64.ts";

const keyCache = new Map<string, Promise<CryptoKey>>();

function importKey(secretsKeyB64: string): Promise<CryptoKey> {
  let key = keyCache.get(secretsKeyB64);
  if (!key) {
    key = crypto.subtle.importKey("raw", base64ToBytes(secretsKeyB64), "AES-GCM", false, [
      "encrypt",
      "decrypt",
    ]);
    keyCache.set(secretsKeyB64, key);
  }
  return key;
}

export async function seal(secretsKeyB64: string, plaintext: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const key = await importKey(secretsKeyB64);
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new TextEncoder().encode(plaintext));
  return `v1.${bytesToBase64(iv)}.${bytesToBase64(new Uint8Array(ct))}`;
}

export async function open(secretsKeyB64: string, sealed: string): Promise<string> {
  const [version, ivB64, ctB64] = sealed.split(".");
  if (version !== "v1" || !ivB64 || !ctB64) throw new Error("unknown sealed secret format");
  const key = await importKey(secretsKeyB64);
  const pt = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: base64ToBytes(ivB64) },
    key,
    base64ToBytes(ctB64),
  );
  return new TextDecoder().decode(pt);
}
