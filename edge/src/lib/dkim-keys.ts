/**
 * DKIM key generation at the edge (docs/api/admin.md#sender-domains): one RSA-2048 key pair per
 * sender domain, and optionally an Ed25519 one for dual signing (RFC 8463). An RSA public key goes
 * into the `p=` tag as base64 SubjectPublicKeyInfo; an Ed25519 one as the bare 32-byte key
 * (RFC 8463 §4.2). Private keys are exported as PKCS#8 PEM, which is what the origin signs with
 * (node:crypto reads both types from it).
 */
import { bytesToBase64 } from "./base64.ts";

export interface DkimKeyPair {
  publicKeyB64: string;
  privateKeyPem: string;
}

const pem = (pkcs8: Uint8Array) =>
  `-----BEGIN PRIVATE KEY-----\n${bytesToBase64(pkcs8)
    .replace(/(.{64})/g, "$1\n")
    .trimEnd()}\n-----END PRIVATE KEY-----\n`;

export async function generateDkimKeyPair(): Promise<DkimKeyPair> {
  const pair = (await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  )) as CryptoKeyPair;
  const spki = new Uint8Array((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer);
  const pkcs8 = new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer);
  return { publicKeyB64: bytesToBase64(spki), privateKeyPem: pem(pkcs8) };
}

/** An Ed25519 key pair (WebCrypto's `Ed25519`, which workerd implements); `publicKeyB64` is the raw key. */
export async function generateEd25519DkimKeyPair(): Promise<DkimKeyPair> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const raw = new Uint8Array((await crypto.subtle.exportKey("raw", pair.publicKey)) as ArrayBuffer);
  const pkcs8 = new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer);
  return { publicKeyB64: bytesToBase64(raw), privateKeyPem: pem(pkcs8) };
}

export const dkimRecordValue = (publicKeyB64: string) => `v=DKIM1; k=rsa; p=${publicKeyB64}`;
/** RFC 8463 §4.2: `k=ed25519` and the base64 of the raw 32-byte public key. */
export const ed25519DkimRecordValue = (publicKeyB64: string) => `v=DKIM1; k=ed25519; p=${publicKeyB64}`;
