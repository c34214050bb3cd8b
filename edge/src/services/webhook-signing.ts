/**
 * The two ways a webhook POST is signed (docs/api/webhooks.md#signatures), with Web Crypto only.
 *
 * SendGrid format (the Signed Event Webhook): ECDSA P-256 with SHA-256 over the UTF-8 timestamp
 * header value followed by the raw body, the signature DER-encoded (ASN.1 SEQUENCE of r and s, as
 * `@sendgrid/eventwebhook` and its starkbank-ecdsa verifier require) in standard base64. The public
 * key is handed out as SendGrid does: base64 of the DER SubjectPublicKeyInfo, no PEM armour.
 *
 * ScaiSend format: HMAC-SHA256 keyed with the endpoint's whole `whsec_…` secret (its UTF-8 bytes)
 * over `<timestamp>.<raw body>`, hex-encoded.
 */
import { base64ToBytes, bytesToBase64 } from "../lib/base64.ts";

const utf8 = new TextEncoder();
const P256 = { name: "ECDSA", namedCurve: "P-256" } as const;

export interface SigningKeyPair {
  /** base64 DER SubjectPublicKeyInfo (what SendGrid's API returns as `public_key`). */
  publicKey: string;
  /** base64 PKCS #8; sealed before it is stored. */
  privateKey: string;
}

export async function generateSigningKey(): Promise<SigningKeyPair> {
  const pair = (await crypto.subtle.generateKey(P256, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = new Uint8Array((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer);
  const pkcs8 = new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer);
  return { publicKey: bytesToBase64(spki), privateKey: bytesToBase64(pkcs8) };
}

// One import per key and isolate; a queue holds one key, so a small bound is plenty.
const privateKeys = new Map<string, Promise<CryptoKey>>();

function importPrivate(pkcs8B64: string): Promise<CryptoKey> {
  let key = privateKeys.get(pkcs8B64);
  if (!key) {
    if (privateKeys.size >= 64) privateKeys.clear();
    key = crypto.subtle.importKey("pkcs8", base64ToBytes(pkcs8B64), P256, false, ["sign"]);
    privateKeys.set(pkcs8B64, key);
    key.catch(() => privateKeys.delete(pkcs8B64));
  }
  return key;
}

/** `X-Twilio-Email-Event-Webhook-Signature` for `timestamp` + `body`. */
export async function signSendGrid(pkcs8B64: string, timestamp: string, body: string): Promise<string> {
  const raw = new Uint8Array(
    await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      await importPrivate(pkcs8B64),
      utf8.encode(timestamp + body),
    ),
  );
  return bytesToBase64(p1363ToDer(raw));
}

/**
 * Web Crypto returns r ‖ s (IEEE P1363, 32 bytes each for P-256); SendGrid's verifiers want DER:
 * SEQUENCE { INTEGER r, INTEGER s }, each integer minimal and positive (a 0x00 before a high bit).
 */
export function p1363ToDer(sig: Uint8Array): Uint8Array {
  const half = sig.length / 2;
  const int = (bytes: Uint8Array) => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    const trimmed = bytes.subarray(i);
    const body = trimmed[0]! & 0x80 ? [0, ...trimmed] : [...trimmed];
    return [0x02, body.length, ...body];
  };
  const seq = [...int(sig.subarray(0, half)), ...int(sig.subarray(half))];
  return new Uint8Array([0x30, seq.length, ...seq]);
}

/** A new endpoint secret: `whsec_` + 32 random bytes in base64url. */
export function newSigningSecret(): string {
  const b64 = bytesToBase64(crypto.getRandomValues(new Uint8Array(32)));
  return `whsec_${b64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}`;
}

/** `X-ScaiSend-Signature`'s hex digest: HMAC-SHA256(secret, `<timestamp>.<body>`). */
export async function hmacSignature(secret: string, timestamp: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    utf8.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8.encode(`${timestamp}.${body}`)));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}
