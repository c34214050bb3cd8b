/**
 * DKIM signing (RFC 6376). relaxed/relaxed survives the whitespace and line-folding changes relays
 * make; the algorithm follows the key: rsa-sha256, or ed25519-sha256 (RFC 8463). A message may be
 * signed with several keys (dual signing: rsa-sha256 first, then ed25519-sha256); each signature is
 * its own DKIM-Signature over the same header fields and body, none covers another (DKIM-Signature
 * is never in h=), and they are written in key order at the top, as mailauth writes them for its
 * `signatureData` list.
 *
 * Two ways to the same bytes:
 *  - mailauth's `dkimSign`, the reference: a streaming parser that handles any input;
 *  - a fast path for what buildMime produces (no lone CR, ASCII signing domain and selector, a
 *    From header; a bare LF is read as CRLF, as mailauth reads it): the message is split once, the
 *    relaxed body hash (RFC 6376 §3.4.4) is one SHA-256 over the body when the body has nothing to
 *    canonicalize, the header block is read, selected, canonicalized and the DKIM-Signature
 *    formatted by mailauth's own functions, and the key is a cached KeyObject. It writes
 *    byte-identical output to `dkimSign` (proven over a corpus in
 *    test/origin/dkim.fast-path.test.ts, which also verifies every result with mailauth and with
 *    python3-dkim). Anything outside that shape goes to mailauth.
 * The fast path costs about half of `dkimSign` per message; the RSA signature itself is most of
 * what is left (docs/architecture.md, "Composing and signing").
 */
import { createHash, createPrivateKey, sign, type KeyObject } from "node:crypto";
import { createRequire } from "node:module";
import { dkimSign } from "mailauth/lib/dkim/sign.js";

export class DkimSignError extends Error {
  override name = "DkimSignError";
}

export interface DkimKey {
  domain: string;
  selector: string;
  privateKeyPem: string;
}

export interface SignDkimOptions {
  /** t= (seconds of this time); tests pin it, production signs at the time of the attempt. */
  signTime?: Date;
  /** false: always mailauth's dkimSign (DKIM_FAST_PATH=false, and the reference in tests). */
  fastPath?: boolean;
}

/**
 * Headers build-mime always writes; the signature must cover them (RFC 6376 §5.4.1 lists From as
 * required; Gmail's bulk sender guidelines want Feedback-ID signed too).
 */
const BASE_HEADERS = [
  "From",
  "To",
  "Subject",
  "Date",
  "Message-ID",
  "MIME-Version",
  "Content-Type",
  "Feedback-ID",
];
/**
 * Present only for some messages; listed only then, mailauth signs just the headers it finds anyway.
 * RFC 8058 §4: a one-click List-Unsubscribe counts only when the signature covers both its fields.
 */
const OPTIONAL_HEADERS = ["Reply-To", "Cc", "List-Unsubscribe", "List-Unsubscribe-Post"];

type Algorithm = "rsa-sha256" | "ed25519-sha256";
interface CachedKey {
  key: KeyObject;
  algorithm: Algorithm;
}
/**
 * Parsing a PEM costs ~40 µs and mailauth parses it on every call; a node signs for a few domains,
 * so remember each key (per thread: every compose worker has its own cache).
 */
const keyByPem = new Map<string, CachedKey>();
const MAX_CACHED_KEYS = 1_000;

function cachedKey(privateKeyPem: string): CachedKey {
  const cached = keyByPem.get(privateKeyPem);
  if (cached) return cached;
  const entry = readKey(privateKeyPem);
  if (keyByPem.size >= MAX_CACHED_KEYS) keyByPem.clear();
  keyByPem.set(privateKeyPem, entry);
  return entry;
}

function readKey(privateKeyPem: string): CachedKey {
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (err) {
    throw new DkimSignError("DKIM private key cannot be read", { cause: err });
  }
  const keyType = key.asymmetricKeyType;
  if (keyType === "rsa") return { key, algorithm: "rsa-sha256" };
  if (keyType === "ed25519") return { key, algorithm: "ed25519-sha256" };
  throw new DkimSignError(`DKIM key type ${keyType ?? "unknown"} is not supported (rsa or ed25519)`);
}

function headerNames(raw: Buffer): Set<string> {
  const end = raw.indexOf("\r\n\r\n");
  const head = raw.subarray(0, end === -1 ? raw.length : end).toString("latin1");
  const names = new Set<string>();
  for (const match of head.matchAll(/^([^\s:]+):/gm)) if (match[1]) names.add(match[1].toLowerCase());
  return names;
}

const asList = (keys: DkimKey | readonly DkimKey[]): readonly DkimKey[] =>
  Array.isArray(keys) ? keys : [keys as DkimKey];

/**
 * Returns the message with one DKIM-Signature header per key in front, in key order. Throws
 * DkimSignError when it could not sign with every key: a message missing one of its signatures is
 * never sent.
 */
export async function signDkim(
  raw: Buffer,
  keys: DkimKey | readonly DkimKey[],
  options: SignDkimOptions = {},
): Promise<Buffer> {
  const list = asList(keys);
  if (list.length === 0) throw new DkimSignError("DKIM signing needs at least one key");
  const signing = list.map((dkim): Signer => {
    const { key: keyObject, algorithm } = cachedKey(dkim.privateKeyPem);
    return { dkim, keyObject, algorithm };
  });
  const present = headerNames(raw);
  const headerList = [...BASE_HEADERS, ...OPTIONAL_HEADERS.filter((h) => present.has(h.toLowerCase()))];
  // One t= for all signatures, as mailauth takes one signing time for its whole list.
  const signTime = options.signTime ?? new Date();
  if (options.fastPath !== false) {
    const header = fastSignatureHeaders(raw, signing, headerList, signTime);
    if (header !== null) return Buffer.concat([Buffer.from(header, "latin1"), raw]);
  }
  return signWithMailauth(raw, signing, headerList, signTime);
}

/** One key, read: the DKIM key as the job carries it and its parsed KeyObject. */
interface Signer {
  dkim: DkimKey;
  keyObject: KeyObject;
  algorithm: Algorithm;
}

async function signWithMailauth(
  raw: Buffer,
  signing: readonly Signer[],
  headerList: string[],
  signTime: Date,
): Promise<Buffer> {
  const signatureData = signing.map(({ dkim, algorithm }) => ({
    signingDomain: dkim.domain,
    selector: dkim.selector,
    privateKey: dkim.privateKeyPem,
    algorithm,
    canonicalization: "relaxed/relaxed",
    headerList,
  }));
  // mailauth creates one signature per `signatureData` entry, in order; the top-level fields are
  // only the defaults its types insist on, so they carry the first entry's values.
  const result = await dkimSign(raw, {
    ...signatureData[0]!,
    signTime,
    signatureData,
  });
  // mailauth reports per-signature failures in `errors` instead of throwing: an unsigned message
  // would sail out and fail DMARC at the receiver, so treat any error as fatal.
  if (result.errors.length > 0) {
    const first = result.errors[0];
    const which = first?.selector ? ` (s=${String(first.selector)})` : "";
    throw new DkimSignError(`DKIM signing failed${which}: ${first?.err.message ?? "unknown error"}`, {
      cause: first?.err,
    });
  }
  if (!result.signatures) throw new DkimSignError("DKIM signing produced no signature");
  return Buffer.concat([Buffer.from(result.signatures, "latin1"), raw]);
}

// mailauth's own header functions (CommonJS, no published types), so the fast path selects,
// canonicalizes and formats headers exactly as dkimSign does.
interface ParsedHeader {
  key: string;
  casedKey: string;
  line: Buffer;
}
interface SigningLines {
  keys: string;
  headers: ParsedHeader[];
}
const require = createRequire(import.meta.url);
const tools = require("mailauth/lib/tools.js") as {
  parseHeaders(buf: Buffer): { parsed: ParsedHeader[] };
  getSigningHeaderLines(parsed: ParsedHeader[], fieldNames: string): SigningLines;
  formatSignatureHeaderLine(type: "DKIM", values: Record<string, unknown>, folded: boolean): string;
};
const { relaxedHeaders } = require("mailauth/lib/dkim/header/relaxed.js") as {
  relaxedHeaders(
    type: "DKIM",
    lines: SigningLines,
    options: Record<string, unknown>,
  ): { canonicalizedHeader: Buffer; dkimHeaderOpts: Record<string, unknown> };
};
const { dkimBody } = require("mailauth/lib/dkim/body/index.js") as {
  dkimBody(
    canon: "relaxed",
    hash: "sha256",
    maxBodyLength: false,
  ): { update(chunk: Buffer): void; digest(encoding: "base64"): string };
};

/** ASCII DNS labels only (RFC 6376 §3.5 d= and s=): nothing for mailauth to convert to an A-label or refuse. */
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const PLAIN_DOMAIN = new RegExp(`^${LABEL}(?:\\.${LABEL})+$`, "i");
const PLAIN_SELECTOR = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`, "i");
const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");

/**
 * The message as mailauth reads it: every bare LF taken as a line break (CRLF), which is also what
 * the SMTP transport sends (nodemailer's QP body lines end in LF; its DATA stream writes CRLF).
 * Null when a CR stands alone, a case left to mailauth.
 */
function withCrlf(raw: Buffer): Buffer | null {
  let crs = 0;
  for (let i = raw.indexOf(CR); i !== -1; i = raw.indexOf(CR, i + 1)) {
    if (raw[i + 1] !== LF) return null;
    crs++;
  }
  const parts: Buffer[] = [];
  let start = 0;
  let lfs = 0;
  for (let i = raw.indexOf(LF); i !== -1; i = raw.indexOf(LF, i + 1)) {
    lfs++;
    if (i > 0 && raw[i - 1] === CR) continue;
    parts.push(raw.subarray(start, i), CRLF);
    start = i + 1;
  }
  if (lfs === crs) return raw;
  parts.push(raw.subarray(start));
  return Buffer.concat(parts);
}

/**
 * Relaxed body hash (RFC 6376 §3.4.4, §3.4.3 for the empty body). A body with no tab, no run of
 * spaces and no space before a line break is already canonical apart from its trailing empty lines;
 * anything else goes through mailauth's canonicalizer.
 */
function relaxedBodyHash(body: Buffer): string {
  if (
    body.indexOf(0x09) === -1 &&
    body.indexOf("  ") === -1 &&
    body.indexOf(" \r\n") === -1 &&
    body[body.length - 1] !== 0x20
  ) {
    let end = body.length;
    while (end >= 2 && body[end - 2] === CR && body[end - 1] === LF) end -= 2;
    const hash = createHash("sha256");
    if (end > 0) hash.update(body.subarray(0, end)).update(CRLF);
    return hash.digest("base64");
  }
  const hasher = dkimBody("relaxed", "sha256", false);
  hasher.update(body);
  return hasher.digest("base64");
}

/**
 * The fast path alone, for tests that must know it was taken: the DKIM-Signature header lines (each
 * with its CRLF, in key order) signDkim would prepend, or null when the message is left to mailauth.
 */
export function dkimSignatureFast(
  raw: Buffer,
  keys: DkimKey | readonly DkimKey[],
  options: { signTime?: Date } = {},
): string | null {
  const signing = asList(keys).map((dkim): Signer => {
    const { key: keyObject, algorithm } = cachedKey(dkim.privateKeyPem);
    return { dkim, keyObject, algorithm };
  });
  const present = headerNames(raw);
  const headerList = [...BASE_HEADERS, ...OPTIONAL_HEADERS.filter((h) => present.has(h.toLowerCase()))];
  return fastSignatureHeaders(raw, signing, headerList, options.signTime ?? new Date());
}

/**
 * The message is split, its headers parsed and its body hashed once; each key then canonicalizes
 * the selected headers with its own DKIM-Signature (a=, s= differ) and signs.
 */
function fastSignatureHeaders(
  raw: Buffer,
  signing: readonly Signer[],
  headerList: string[],
  signTime: Date,
): string | null {
  if (signing.length === 0) return null;
  if (signing.some(({ dkim }) => !PLAIN_DOMAIN.test(dkim.domain) || !PLAIN_SELECTOR.test(dkim.selector)))
    return null;
  const message = withCrlf(raw);
  if (message === null) return null;
  const headerEnd = message.indexOf("\r\n\r\n");
  // No header/body separator, or an empty header section: mailauth's parser decides those.
  if (headerEnd <= 0) return null;
  const headers = tools.parseHeaders(message.subarray(0, headerEnd + 4));
  const lines = tools.getSigningHeaderLines(headers.parsed, headerList.join(":"));
  // mailauth refuses to sign without From (RFC 6376 §5.4): let it report that.
  if (!lines.headers.some((h) => h.key === "from")) return null;
  const bodyHash = relaxedBodyHash(message.subarray(headerEnd + 4));
  const timestamp = Math.floor(signTime.getTime() / 1000);
  let out = "";
  for (const { dkim, keyObject, algorithm } of signing) {
    const { canonicalizedHeader, dkimHeaderOpts } = relaxedHeaders("DKIM", lines, {
      signingDomain: dkim.domain,
      selector: dkim.selector,
      algorithm,
      canonicalization: "relaxed/relaxed",
      identity: false,
      timestamp,
      expiration: false,
      bodyHash,
    });
    // ed25519-sha256 signs the SHA-256 of the canonicalized header (RFC 8463 §3).
    const signature =
      algorithm === "rsa-sha256"
        ? sign("sha256", canonicalizedHeader, keyObject)
        : sign(null, createHash("sha256").update(canonicalizedHeader).digest(), keyObject);
    dkimHeaderOpts.b = signature.toString("base64");
    out += `${tools.formatSignatureHeaderLine("DKIM", dkimHeaderOpts, true)}\r\n`;
  }
  return out;
}
