/**
 * What an uploaded file really is (docs/api/images.md#what-is-accepted): the type comes from the
 * file's first bytes, never from the request's Content-Type or the file name, and the dimensions
 * from its headers. The walk also checks the file is whole — every PNG chunk inside the file with
 * its CRC and an IEND, every GIF block up to the trailer, a JPEG with its frame header, a scan and
 * an end-of-image marker after it, a WebP whose RIFF size fits the bytes — so a truncated or
 * corrupted upload is refused here, before any decoder sees it.
 *
 * Formats: PNG (ISO/IEC 15948, https://www.w3.org/TR/png/), GIF (GIF89a specification), JPEG
 * (ITU-T T.81 / JFIF), WebP (RFC 9649). Pure: no I/O, runs in workerd and Node.
 */

export const IMAGE_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"] as const;
export type ImageType = (typeof IMAGE_TYPES)[number];

export const isImageType = (v: string): v is ImageType => (IMAGE_TYPES as readonly string[]).includes(v);

export type Sniffed =
  | { ok: true; type: ImageType; width: number; height: number }
  | { ok: false; reason: "unsupported" | "malformed"; message: string };

const malformed = (type: string, why: string): Sniffed => ({
  ok: false,
  reason: "malformed",
  message: `the file is not a complete ${type} image (${why})`,
});

const startsWith = (b: Uint8Array, sig: readonly number[], at = 0): boolean =>
  b.length >= at + sig.length && sig.every((v, i) => b[at + i] === v);

const ascii = (b: Uint8Array, at: number, s: string): boolean =>
  startsWith(
    b,
    Array.from(s, (ch) => ch.charCodeAt(0)),
    at,
  );

const be16 = (b: Uint8Array, i: number): number => (b[i]! << 8) | b[i + 1]!;
const be32 = (b: Uint8Array, i: number): number =>
  ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
const le16 = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8);
const le24 = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16);
const le32 = (b: Uint8Array, i: number): number => (le24(b, i) | (b[i + 3]! << 24)) >>> 0;

export function sniffImage(bytes: Uint8Array): Sniffed {
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return sniffPng(bytes);
  if (ascii(bytes, 0, "GIF87a") || ascii(bytes, 0, "GIF89a")) return sniffGif(bytes);
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return sniffJpeg(bytes);
  if (ascii(bytes, 0, "RIFF") && ascii(bytes, 8, "WEBP")) return sniffWebp(bytes);
  return {
    ok: false,
    reason: "unsupported",
    message: "unsupported file type: only JPEG, PNG, GIF and WebP images are accepted",
  };
}

function positive(type: ImageType, width: number, height: number): Sniffed {
  if (width < 1 || height < 1) return malformed(type.slice(6).toUpperCase(), "zero width or height");
  return { ok: true, type, width, height };
}

// ── PNG ────────────────────────────────────────────────────────────────────────────────────────

let crcTable: Uint32Array | undefined;
function crc32(b: Uint8Array, start: number, end: number): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = crcTable[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function sniffPng(b: Uint8Array): Sniffed {
  let i = 8;
  let width = 0;
  let height = 0;
  let sawData = false;
  for (let first = true; ; first = false) {
    if (i + 12 > b.length) return malformed("PNG", "it ends inside a chunk");
    const len = be32(b, i);
    const type = String.fromCharCode(b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!);
    const end = i + 8 + len + 4;
    if (len > 0x7fffffff || end > b.length) return malformed("PNG", `it ends inside the ${type} chunk`);
    if (crc32(b, i + 4, i + 8 + len) !== be32(b, i + 8 + len))
      return malformed("PNG", `the ${type} chunk's CRC does not match`);
    if (first) {
      if (type !== "IHDR" || len !== 13) return malformed("PNG", "the first chunk is not IHDR");
      width = be32(b, i + 8);
      height = be32(b, i + 12);
    }
    if (type === "IDAT") sawData = true;
    i = end;
    if (type === "IEND") break;
  }
  if (!sawData) return malformed("PNG", "it has no image data");
  return positive("image/png", width, height);
}

// ── GIF ────────────────────────────────────────────────────────────────────────────────────────

function sniffGif(b: Uint8Array): Sniffed {
  if (b.length < 13) return malformed("GIF", "it ends inside the header");
  const width = le16(b, 6);
  const height = le16(b, 8);
  const flags = b[10]!;
  let i = 13 + (flags & 0x80 ? 3 * (1 << ((flags & 7) + 1)) : 0);
  let images = 0;
  /** Skips a run of data sub-blocks (a size byte, then that many bytes; 0 ends it). */
  const skipSubBlocks = (): boolean => {
    for (;;) {
      if (i >= b.length) return false;
      const n = b[i]!;
      i += 1 + n;
      if (n === 0) return i <= b.length;
    }
  };
  for (;;) {
    if (i >= b.length) return malformed("GIF", "it ends before the trailer");
    const block = b[i]!;
    if (block === 0x3b) break;
    if (block === 0x21) {
      i += 2; // introducer, label
      if (!skipSubBlocks()) return malformed("GIF", "it ends inside an extension");
    } else if (block === 0x2c) {
      if (i + 10 > b.length) return malformed("GIF", "it ends inside an image descriptor");
      const local = b[i + 9]!;
      i += 10 + (local & 0x80 ? 3 * (1 << ((local & 7) + 1)) : 0);
      i += 1; // LZW minimum code size
      if (!skipSubBlocks()) return malformed("GIF", "it ends inside image data");
      images += 1;
    } else {
      return malformed("GIF", `unknown block 0x${block.toString(16)}`);
    }
  }
  if (images === 0) return malformed("GIF", "it has no image");
  return positive("image/gif", width, height);
}

// ── JPEG ───────────────────────────────────────────────────────────────────────────────────────

/** Start-of-frame markers carry the dimensions: C0–CF except DHT (C4), JPG (C8) and DAC (CC). */
const isSof = (m: number): boolean => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

function sniffJpeg(b: Uint8Array): Sniffed {
  let i = 2;
  let width = 0;
  let height = 0;
  let frame = false;
  for (;;) {
    while (i < b.length && b[i] === 0xff && b[i + 1] === 0xff) i++; // fill bytes
    if (i + 4 > b.length || b[i] !== 0xff) return malformed("JPEG", "it ends before its image data");
    const marker = b[i + 1]!;
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2; // markers without a length
      continue;
    }
    if (marker === 0xd9) return malformed("JPEG", "it ends before its image data");
    const len = be16(b, i + 2);
    if (len < 2 || i + 2 + len > b.length) return malformed("JPEG", "it ends inside a segment");
    if (isSof(marker)) {
      if (len < 8) return malformed("JPEG", "a short frame header");
      height = be16(b, i + 5);
      width = be16(b, i + 7);
      frame = true;
    }
    if (marker === 0xda) {
      if (!frame) return malformed("JPEG", "a scan before the frame header");
      // The entropy-coded data follows; the image is whole when an end-of-image marker follows it.
      const scan = i + 2 + len;
      for (let j = b.length - 2; j >= scan; j--) {
        if (b[j] === 0xff && b[j + 1] === 0xd9) return positive("image/jpeg", width, height);
      }
      return malformed("JPEG", "it has no end-of-image marker");
    }
    i += 2 + len;
  }
}

// ── WebP ───────────────────────────────────────────────────────────────────────────────────────

function sniffWebp(b: Uint8Array): Sniffed {
  const riffEnd = 8 + le32(b, 4);
  if (b.length < 12 || riffEnd > b.length) return malformed("WebP", "it is shorter than its RIFF size");
  let i = 12;
  let width = 0;
  let height = 0;
  let found = false;
  let image = false;
  while (i + 8 <= riffEnd) {
    const fourcc = String.fromCharCode(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!);
    const size = le32(b, i + 4);
    const data = i + 8;
    if (data + size > riffEnd) return malformed("WebP", `it ends inside the ${fourcc} chunk`);
    if (fourcc === "VP8X" && size >= 10 && !found) {
      width = le24(b, data + 4) + 1;
      height = le24(b, data + 7) + 1;
      found = true;
    } else if (fourcc === "VP8 " && size >= 10) {
      if (!startsWith(b, [0x9d, 0x01, 0x2a], data + 3)) return malformed("WebP", "a bad VP8 frame header");
      if (!found) {
        width = le16(b, data + 6) & 0x3fff;
        height = le16(b, data + 8) & 0x3fff;
        found = true;
      }
      image = true;
    } else if (fourcc === "VP8L" && size >= 5) {
      if (b[data] !== 0x2f) return malformed("WebP", "a bad VP8L signature");
      if (!found) {
        const bits = le32(b, data + 1);
        width = (bits & 0x3fff) + 1;
        height = ((bits >>> 14) & 0x3fff) + 1;
        found = true;
      }
      image = true;
    } else if (fourcc === "ANMF") {
      image = true;
    }
    i = data + size + (size & 1); // chunks are padded to an even size
  }
  if (!found || !image) return malformed("WebP", "it has no image data");
  return positive("image/webp", width, height);
}
