/**
 * UTF-8 size of a string, as TextEncoder would encode it (a lone surrogate becomes U+FFFD, 3 bytes),
 * counted without allocating the encoded copy: fields and frames may be megabytes long. Limits in
 * this project are in bytes (D1 row sizes, WebSocket frame caps), never in UTF-16 `.length`.
 */
export function utf8ByteLength(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}
