/**
 * Serializes a MIME tree MailComposer compiled (its MimeNode) in one synchronous pass, instead of
 * `MimeNode.build()`'s stream pipeline. The bytes are the library's own: each node's header block is
 * its `buildHeaders()`, each body goes through the library's own quoted-printable or base64 encoder
 * (its `_transform` and `_flush`, called directly), and the boundaries and the final line break
 * are written as `MimeNode.stream` and its `LastNewline` write them. What is left out is only the
 * machinery around those calls: a PassThrough per node, pipelines, abort signals and a setImmediate
 * per part, which cost buildMime more than the encoding itself (the compose worker's CPU profile:
 * docs/architecture.md, "Composing and signing").
 *
 * Why this equals `build()`: a string or Buffer content reaches the encoder as ONE chunk there too
 * (`_getStream` ends a PassThrough with the whole value; a string is written as UTF-8), and the
 * encoders are deterministic functions of their chunks. test/origin/build-mime.fast-path.test.ts
 * compares the two byte for byte over a corpus (alternatives, attachments, inline parts, non-ASCII,
 * long lines, trailing whitespace, bodies over the encoder's 64 KiB slice).
 *
 * A body already encoded once (same content, transfer encoding and binary flag) is taken from a
 * small per-thread cache (`bodyCache` below): many personalizations of one content encode it once;
 * test/origin/render-mime.body-cache.perf-equal.test.ts compares cached output with `build()` too.
 *
 * Anything outside that shape returns null and the caller uses `build()`: content from a stream, a
 * file or a URL (never in our jobs: file and URL access are disabled), raw nodes, and nodes with
 * transforms, post-process functions or a newline conversion (MailComposer sets none of them).
 *
 * Reads MimeNode fields nodemailer does not type (`childNodes`, `multipart`, `boundary`, `content`,
 * `contentType`, `_raw`, `_transforms`, `_processFuncs`, `newline`) and the encoders' `_transform`
 * and `_flush`: nodemailer 10's; the corpus test fails if a library change moves one of them.
 */
import type { Transform } from "node:stream";
import { Encoder as Base64Encoder } from "nodemailer/lib/base64/index.js";
import type MimeNode from "nodemailer/lib/mime-node/index.js";
import { Encoder as QpEncoder } from "nodemailer/lib/qp/index.js";

interface NodeInternals {
  childNodes: NodeInternals[];
  multipart: string | false;
  boundary: string;
  content?: unknown;
  contentType?: string;
  _raw?: unknown;
  _transforms: unknown[];
  _processFuncs: unknown[];
  newline?: unknown;
  getTransferEncoding(): string | false;
  buildHeaders(): string;
}

const NOT_SUPPORTED = Symbol("not supported");

/**
 * Encoded bodies by (transfer encoding, binary flag, content): the encoders are pure functions of
 * their one chunk, so a body seen before is the same bytes, and a send with many personalizations
 * of one content (the common bulk case) encodes it once per thread instead of once per message.
 * Bounded in entries and bytes; the oldest entry goes first. Only string content is cached (a
 * Buffer has no cheap key), and only up to BODY_CACHE_MAX_CHARS.
 */
const bodyCache = new Map<string, Buffer>();
const BODY_CACHE_MAX_ENTRIES = 64;
const BODY_CACHE_MAX_BYTES = 16 * 2 ** 20;
const BODY_CACHE_MAX_CHARS = 512 * 1024;
let bodyCacheBytes = 0;
let bodyCacheHits = 0;

function remember(key: string, encoded: Buffer): void {
  bodyCache.set(key, encoded);
  bodyCacheBytes += encoded.length + key.length;
  while (bodyCache.size > BODY_CACHE_MAX_ENTRIES || bodyCacheBytes > BODY_CACHE_MAX_BYTES) {
    const [oldestKey, oldest] = bodyCache.entries().next().value as [string, Buffer];
    bodyCache.delete(oldestKey);
    bodyCacheBytes -= oldest.length + oldestKey.length;
  }
}

/** Tests only: how many encoded bodies are cached, their bytes, and how many were served from it. */
export function bodyCacheStats(): { entries: number; bytes: number; hits: number } {
  return { entries: bodyCache.size, bytes: bodyCacheBytes, hits: bodyCacheHits };
}

/** Content the fast path can encode: what `_getStream` would hand the encoder as one chunk. */
function contentBytes(content: unknown): Buffer | typeof NOT_SUPPORTED {
  if (typeof content === "string") return Buffer.from(content, "utf8");
  if (Buffer.isBuffer(content)) {
    // A resolved or to-be-resolved value is a Buffer with flags on it: left to build().
    const flags = content as unknown as { _resolve?: unknown; _resolvedValue?: unknown };
    if (flags._resolve || flags._resolvedValue) return NOT_SUPPORTED;
    return content;
  }
  return NOT_SUPPORTED;
}

/** Runs one of the library's encoders over one chunk, as its pipe would, and collects what it pushes. */
function encodeWith(encoder: Transform, bytes: Buffer, out: Buffer[]): void {
  const internals = encoder as unknown as {
    push(chunk: Buffer | string, encoding?: BufferEncoding): boolean;
    _transform(chunk: Buffer, encoding: string, done: (err?: Error | null) => void): void;
    _flush(done: (err?: Error | null) => void): void;
  };
  let failed: Error | null | undefined;
  const done = (err?: Error | null) => {
    failed ??= err;
  };
  // Own property: the encoder is used for this call only and never piped anywhere.
  internals.push = (chunk, encoding) => {
    if (chunk !== null) out.push(typeof chunk === "string" ? Buffer.from(chunk, encoding ?? "utf8") : chunk);
    return true;
  };
  if (bytes.length > 0) internals._transform(bytes, "buffer", done);
  internals._flush(done);
  if (failed) throw failed;
}

function renderNode(node: NodeInternals, out: Buffer[]): boolean {
  if (node._raw) return false;
  if (node._transforms.length > 0 || node._processFuncs.length > 0 || node.newline) return false;
  // Same order as MimeNode.stream: the transfer encoding is decided before the headers are built.
  const transferEncoding = node.getTransferEncoding();
  out.push(Buffer.from(`${node.buildHeaders()}\r\n\r\n`, "utf8"));
  if (node.content) {
    // As MimeNode.stream: outside text/* a lone CR or LF is data and gets encoded.
    const binary = !/^text\//i.test(node.contentType ?? "");
    const cacheKey =
      typeof node.content === "string" && node.content.length <= BODY_CACHE_MAX_CHARS
        ? `${transferEncoding || ""}:${binary ? "b" : "t"}:${node.content}`
        : null;
    const cached = cacheKey === null ? undefined : bodyCache.get(cacheKey);
    if (cached) {
      bodyCacheHits++;
      out.push(cached);
    } else {
      const bytes = contentBytes(node.content);
      if (bytes === NOT_SUPPORTED) return false;
      const body: Buffer[] = [];
      if (transferEncoding === "base64") encodeWith(new Base64Encoder({}), bytes, body);
      else if (transferEncoding === "quoted-printable")
        encodeWith(new QpEncoder({ binary } as object), bytes, body);
      else body.push(bytes);
      const encoded = body.length === 1 ? body[0]! : Buffer.concat(body);
      if (cacheKey !== null) remember(cacheKey, encoded);
      out.push(encoded);
    }
  }
  if (node.multipart) {
    node.childNodes.forEach((child, i) => {
      out.push(Buffer.from(`${i > 0 ? "\r\n" : ""}--${node.boundary}\r\n`, "utf8"));
      if (!renderNode(child, out)) throw NOT_SUPPORTED;
    });
    out.push(Buffer.from(`\r\n--${node.boundary}--\r\n`, "utf8"));
  }
  return true;
}

/**
 * The message `root.build()` would produce, or null when the tree holds something only the stream
 * pipeline handles (see the header).
 */
export function renderMimeTree(root: MimeNode): Buffer | null {
  const out: Buffer[] = [];
  try {
    if (!renderNode(root as unknown as NodeInternals, out)) return null;
  } catch (err) {
    if (err === NOT_SUPPORTED) return null;
    throw err;
  }
  // LastNewline: the message ends with a line break (CR alone gets its LF).
  const last = out.findLast((chunk) => chunk.length > 0);
  const lastByte = last?.[last.length - 1];
  if (lastByte !== 0x0a) out.push(Buffer.from(lastByte === 0x0d ? "\n" : "\r\n"));
  return Buffer.concat(out);
}
