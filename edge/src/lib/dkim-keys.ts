/**
 * DKIM key generation at the edge: one RSA-2048 key pair per sender domain (docs/api/admin.md#sender-domains).
 * The public key goes into the `p=` tag as base64 SubjectPublicKeyInfo; the private key is
 * exported as a PKCS#8 PEM, which is what mailauth on the origin signs with.
 */
import { bytesToBase64 } from "./base64.ts";

export interface DkimKeyPair {
  publicKeyB64: string;
  privateKeyPem: string;
}

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
  const body = bytesToBase64(pkcs8)
    .replace(/(.{64})/g, "$1\n")
    .trimEnd();
  return {
    publicKeyB64: bytesToBase64(spki),
    privateKeyPem: `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`,
  };
}

export const dkimRecordValue = (publicKeyB64: string) => `v=DKIM1; k=rsa; p=${publicKeyB64}`;
