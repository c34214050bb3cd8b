/**
 * Real image files for the image library's tests, encoded here from pixels so no test depends on the
 * decoder it checks: PNG with stored (uncompressed) deflate blocks (RFC 1950/1951, PNG spec), GIF89a
 * with fixed-width LZW codes (a clear code before the table would grow). JPEG and WebP come from
 * photon's encoders (test/edge/images.photon.test.ts checks those load in workerd).
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const u32be = (v: number) => new Uint8Array([(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]);

function chunk(type: string, data: Uint8Array): Uint8Array {
  const td = concat([new TextEncoder().encode(type), data]);
  return concat([u32be(data.length), td, u32be(crc32(td))]);
}

/** A colour per pixel: (x, y) → [r, g, b]. */
export type Paint = (x: number, y: number) => [number, number, number];

export const gradient: Paint = (x, y) => [(x * 7) & 255, (y * 5) & 255, ((x + y) * 3) & 255];

/**
 * An RGB PNG of `width` × `height`, filter 0 on every row, zlib with stored blocks. `declared` puts
 * other dimensions in IHDR (with a correct CRC) than the pixel data has: well-formed chunks whose
 * image does not decode.
 */
export function encodePng(
  width: number,
  height: number,
  paint: Paint = gradient,
  declared: { width: number; height: number } = { width, height },
): Uint8Array<ArrayBuffer> {
  const raw = new Uint8Array(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3);
    for (let x = 0; x < width; x++) raw.set(paint(x, y), row + 1 + x * 3);
  }
  const blocks: Uint8Array[] = [new Uint8Array([0x78, 0x01])];
  for (let i = 0; i < raw.length || i === 0; i += 65535) {
    const part = raw.subarray(i, Math.min(raw.length, i + 65535));
    const last = i + 65535 >= raw.length ? 1 : 0;
    const n = part.length;
    blocks.push(new Uint8Array([last, n & 255, n >>> 8, ~n & 255, (~n >>> 8) & 255]), part);
  }
  let a = 1;
  let b = 0;
  for (const x of raw) {
    a = (a + x) % 65521;
    b = (b + a) % 65521;
  }
  blocks.push(u32be(((b << 16) | a) >>> 0));
  const ihdr = concat([u32be(declared.width), u32be(declared.height), new Uint8Array([8, 2, 0, 0, 0])]);
  return concat([
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", concat(blocks)),
    chunk("IEND", new Uint8Array()),
  ]);
}

/**
 * A GIF89a of `width` × `height` in a 4-colour palette (pixel = (x + y) mod 4). LZW with 2-bit
 * minimum code size: every pixel is a literal 3-bit code and a clear code comes every 2 literals
 * (2^2 − 2), before the decoder's table would grow to 4-bit codes.
 */
export function encodeGif(width: number, height: number): Uint8Array<ArrayBuffer> {
  const palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
  const codes: number[] = [4];
  let sinceClear = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (sinceClear === 2) {
        codes.push(4);
        sinceClear = 0;
      }
      codes.push((x + y) % 4);
      sinceClear++;
    }
  }
  codes.push(5); // end of information
  const packed: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const c of codes) {
    acc |= c << bits;
    bits += 3;
    while (bits >= 8) {
      packed.push(acc & 255);
      acc >>>= 8;
      bits -= 8;
    }
  }
  if (bits > 0) packed.push(acc & 255);
  const sub: number[] = [];
  for (let i = 0; i < packed.length; i += 255) {
    const part = packed.slice(i, i + 255);
    sub.push(part.length, ...part);
  }
  sub.push(0);
  const le = (v: number) => [v & 255, v >>> 8];
  return new Uint8Array([
    ...Array.from("GIF89a", (c) => c.charCodeAt(0)),
    ...le(width),
    ...le(height),
    0xf1, // global colour table, 2 bits per entry (4 colours)
    0,
    0,
    ...palette,
    0x2c,
    0,
    0,
    0,
    0,
    ...le(width),
    ...le(height),
    0,
    2, // LZW minimum code size
    ...sub,
    0x3b,
  ]);
}
