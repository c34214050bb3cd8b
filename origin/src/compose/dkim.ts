/**
 * DKIM signing (RFC 6376) with mailauth. relaxed/relaxed survives the whitespace and line-folding
 * changes relays make; the algorithm follows the key: rsa-sha256, or ed25519-sha256 (RFC 8463).
 */
import { createPrivateKey } from "node:crypto";
import { dkimSign } from "mailauth/lib/dkim/sign.js";

export class DkimSignError extends Error {
  override name = "DkimSignError";
}

export interface DkimKey {
  domain: string;
  selector: string;
  privateKeyPem: string;
}

/** Headers build-mime always writes; the signature must cover them (RFC 6376 §5.4.1 lists From as required). */
const BASE_HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"];
/** Present only for some messages; listed only then, mailauth signs just the headers it finds anyway. */
const OPTIONAL_HEADERS = ["Reply-To", "Cc"];

type Algorithm = "rsa-sha256" | "ed25519-sha256";
/** Parsing a PEM costs ~40 µs; a node signs for a few domains, so remember each key's algorithm. */
const algorithmByKey = new Map<string, Algorithm>();
const MAX_CACHED_KEYS = 1_000;

function algorithmFor(privateKeyPem: string): Algorithm {
  const cached = algorithmByKey.get(privateKeyPem);
  if (cached) return cached;
  const algorithm = readAlgorithm(privateKeyPem);
  if (algorithmByKey.size >= MAX_CACHED_KEYS) algorithmByKey.clear();
  algorithmByKey.set(privateKeyPem, algorithm);
  return algorithm;
}

function readAlgorithm(privateKeyPem: string): Algorithm {
  let keyType: string | undefined;
  try {
    keyType = createPrivateKey(privateKeyPem).asymmetricKeyType;
  } catch (err) {
    throw new DkimSignError("DKIM private key cannot be read", { cause: err });
  }
  if (keyType === "rsa") return "rsa-sha256";
  if (keyType === "ed25519") return "ed25519-sha256";
  throw new DkimSignError(`DKIM key type ${keyType ?? "unknown"} is not supported (rsa or ed25519)`);
}

function headerNames(raw: Buffer): Set<string> {
  const end = raw.indexOf("\r\n\r\n");
  const head = raw.subarray(0, end === -1 ? raw.length : end).toString("latin1");
  const names = new Set<string>();
  for (const match of head.matchAll(/^([^\s:]+):/gm)) if (match[1]) names.add(match[1].toLowerCase());
  return names;
}

/** Returns the message with a DKIM-Signature header in front. Throws DkimSignError when mailauth could not sign. */
export async function signDkim(
  raw: Buffer,
  key: DkimKey,
  options: { signTime?: Date } = {},
): Promise<Buffer> {
  const present = headerNames(raw);
  const headerList = [...BASE_HEADERS, ...OPTIONAL_HEADERS.filter((h) => present.has(h.toLowerCase()))];
  const signature = {
    signingDomain: key.domain,
    selector: key.selector,
    privateKey: key.privateKeyPem,
    algorithm: algorithmFor(key.privateKeyPem),
    canonicalization: "relaxed/relaxed",
    headerList,
  };
  // mailauth creates one signature per `signatureData` entry; the top-level fields are only the
  // defaults its types insist on, so both carry the same values.
  const result = await dkimSign(raw, {
    ...signature,
    ...(options.signTime ? { signTime: options.signTime } : {}),
    signatureData: [signature],
  });
  // mailauth reports per-signature failures in `errors` instead of throwing: an unsigned message
  // would sail out and fail DMARC at the receiver, so treat any error as fatal.
  if (result.errors.length > 0) {
    const first = result.errors[0];
    throw new DkimSignError(`DKIM signing failed: ${first?.err.message ?? "unknown error"}`, {
      cause: first?.err,
    });
  }
  if (!result.signatures) throw new DkimSignError("DKIM signing produced no signature");
  return Buffer.concat([Buffer.from(result.signatures, "latin1"), raw]);
}
