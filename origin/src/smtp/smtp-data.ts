/**
 * A message as it goes on the wire after DATA's 354 (RFC 5321 §4.1.1.4, §4.5.2): every line break
 * CRLF, a "." at the start of a line doubled (transparency), and the terminating CRLF "." CRLF.
 *
 * These are exactly the bytes nodemailer's DataStream (smtp-connection/data-stream.js) writes for a
 * message handed to it in one chunk, as SMTPConnection.send does with a Buffer: a bare LF or a bare CR
 * becomes CRLF, a dot after a bare CR is stuffed too (against SMTP smuggling), and the end is ".\r\n"
 * after a final LF, "\n.\r\n" after a final CR, "\r\n.\r\n" otherwise. Built here in one pass over
 * Buffer.indexOf (native) instead of that Transform's byte loop and stream machinery, which ran on
 * the event loop for every message (docs/architecture.md, "Composing and signing").
 *
 * A message with a bare CR anywhere (buildMime never writes one) goes through the library's own
 * DataStream functions, called directly, so the rare case cannot differ either.
 * test/origin/smtp-data.perf-equal.test.ts compares the two byte for byte over a corpus.
 */
import DataStream from "nodemailer/lib/smtp-connection/data-stream.js";

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/** The DATA bytes of `raw`, terminator included (see the header). */
export function smtpData(raw: Buffer): Buffer {
  // A CR not followed by LF: the library's own code decides.
  for (let i = raw.indexOf(CR); i !== -1; i = raw.indexOf(CR, i + 1)) {
    if (raw[i + 1] !== LF) return viaDataStream(raw);
  }
  // Insertions: a CR before each bare LF, a dot before each line that starts with one.
  const crAt: number[] = [];
  const dotAt: number[] = [];
  if (raw.length > 0 && raw[0] === DOT) dotAt.push(0);
  for (let i = raw.indexOf(LF); i !== -1; i = raw.indexOf(LF, i + 1)) {
    if (i === 0 || raw[i - 1] !== CR) crAt.push(i);
    if (raw[i + 1] === DOT) dotAt.push(i + 1);
  }
  const last = raw.length > 0 ? raw[raw.length - 1] : undefined;
  const tail = last === LF ? ".\r\n" : "\r\n.\r\n";
  const out = Buffer.allocUnsafe(raw.length + crAt.length + dotAt.length + tail.length);
  let o = 0;
  let from = 0;
  let c = 0;
  let d = 0;
  // Both lists are ascending; at one position a CR (before the LF) and a dot (after it) never coincide.
  while (c < crAt.length || d < dotAt.length) {
    const nextCr = c < crAt.length ? crAt[c]! : Infinity;
    const nextDot = d < dotAt.length ? dotAt[d]! : Infinity;
    const at = nextCr < nextDot ? nextCr : nextDot;
    o += raw.copy(out, o, from, at);
    out[o++] = at === nextCr ? CR : DOT;
    if (at === nextCr) c++;
    else d++;
    from = at;
  }
  o += raw.copy(out, o, from);
  o += out.write(tail, o, "latin1");
  return o === out.length ? out : out.subarray(0, o);
}

/** DataStream's `_transform` on the whole message as one chunk, then its `_flush`. */
function viaDataStream(raw: Buffer): Buffer {
  const stream = new DataStream() as unknown as {
    push(chunk: Buffer): boolean;
    _transform(chunk: Buffer, encoding: string, done: (err?: Error | null) => void): void;
    _flush(done: (err?: Error | null) => void): void;
  };
  const parts: Buffer[] = [];
  stream.push = (chunk: Buffer) => {
    parts.push(chunk);
    return true;
  };
  stream._transform(raw, "buffer", () => {});
  stream._flush(() => {});
  return Buffer.concat(parts);
}
