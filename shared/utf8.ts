/**
 * UTF-8 size of a string, as TextEncoder would encode it (a lone surrogate becomes U+FFFD, 3 bytes).
 * Limits in this project are in bytes (D1 row sizes, WebSocket frame caps), never in UTF-16 `.length`.
 *
 * The send route sizes every message's content and job this way, and the origin every frame, so it is
 * on the hot path: long strings are counted by the runtime's own encoder (`encodeInto`, native) into
 * one reused scratch buffer, in chunks, so a megabyte field never allocates its encoded copy. Short
 * strings are counted in JS, where a native call costs more than the loop.
 */
const encoder = new TextEncoder();

/** UTF-16 units per chunk; UTF-8 takes at most 3 bytes per unit (a surrogate pair: 4 bytes for 2). */
const CHUNK_UNITS = 16_384;
const scratch = new Uint8Array(CHUNK_UNITS * 3);
/** At or below this length the JS loop is as fast as the native call (measured in Node 22 and workerd). */
const SHORT_UNITS = 32;

export function utf8ByteLength(s: string): number {
  if (s.length <= SHORT_UNITS) return countInJs(s);
  if (s.length <= CHUNK_UNITS) return encoder.encodeInto(s, scratch).written;
  let bytes = 0;
  for (let from = 0; from < s.length;) {
    let to = Math.min(s.length, from + CHUNK_UNITS);
    // A chunk never ends between the two halves of a surrogate pair: each half alone would count 3.
    if (to < s.length && isHighSurrogate(s.charCodeAt(to - 1))) to--;
    bytes += encoder.encodeInto(s.slice(from, to), scratch).written;
    from = to;
  }
  return bytes;
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

function countInJs(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (isHighSurrogate(c) && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}
