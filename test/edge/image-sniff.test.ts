/**
 * services/image-sniff.ts on its own: the type from the first bytes, the dimensions from the headers,
 * and the walk that finds a truncated file, for the shapes of each format the upload tests do not
 * make (progressive JPEG, fill bytes, extended and animated WebP, GIF87a, odd-sized RIFF chunks).
 */
import { describe, expect, it } from "vitest";
import { sniffImage } from "../../edge/src/services/image-sniff.ts";
import { encodeGif, encodePng } from "./image-fixtures.ts";

const bytes = (...parts: (number[] | string)[]): Uint8Array =>
  new Uint8Array(parts.flatMap((p) => (typeof p === "string" ? Array.from(p, (c) => c.charCodeAt(0)) : p)));

const le32 = (v: number) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255];
const le24 = (v: number) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255];

/** A RIFF/WEBP file around `chunks` (each [fourcc, data]), padded as RFC 9649 §2.1 requires. */
function webp(chunks: [string, number[]][]): Uint8Array {
  const body: number[] = [];
  for (const [fourcc, data] of chunks) {
    body.push(...Array.from(fourcc, (c) => c.charCodeAt(0)), ...le32(data.length), ...data);
    if (data.length % 2 === 1) body.push(0);
  }
  return bytes("RIFF", le32(4 + body.length), "WEBP", body);
}

/** A JPEG skeleton: SOI, APP0, a frame header of `sof` type, a scan with one byte of data, EOI. */
function jpeg(sof: number, width: number, height: number, opts: { fill?: boolean; eoi?: boolean } = {}) {
  return bytes(
    [0xff, 0xd8],
    [0xff, 0xe0, 0, 16],
    "JFIF",
    [0, 1, 1, 0, 0, 1, 0, 1, 0, 0],
    opts.fill ? [0xff, 0xff, 0xff] : [],
    [0xff, sof, 0, 11, 8, height >> 8, height & 255, width >> 8, width & 255, 1, 1, 0x11, 0],
    [0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0],
    [0x12, 0x34],
    opts.eoi === false ? [] : [0xff, 0xd9],
  );
}

describe("sniffImage", () => {
  it("reads PNG and GIF (87a and 89a) dimensions from their headers", () => {
    expect(sniffImage(encodePng(7, 3))).toEqual({ ok: true, type: "image/png", width: 7, height: 3 });
    const gif = encodeGif(300, 2);
    expect(sniffImage(gif)).toEqual({ ok: true, type: "image/gif", width: 300, height: 2 });
    const gif87 = gif.slice();
    gif87.set(bytes("GIF87a"));
    expect(sniffImage(gif87)).toMatchObject({ ok: true, type: "image/gif" });
  });

  it("reads baseline and progressive JPEG frame headers, past fill bytes", () => {
    expect(sniffImage(jpeg(0xc0, 640, 480))).toEqual({
      ok: true,
      type: "image/jpeg",
      width: 640,
      height: 480,
    });
    expect(sniffImage(jpeg(0xc2, 1, 4000, { fill: true }))).toEqual({
      ok: true,
      type: "image/jpeg",
      width: 1,
      height: 4000,
    });
    expect(sniffImage(jpeg(0xc0, 10, 10, { eoi: false }))).toMatchObject({ ok: false, reason: "malformed" });
    // A DHT (C4) segment is not a frame header: without one, the scan comes first and is refused.
    expect(sniffImage(jpeg(0xc4, 10, 10))).toMatchObject({ ok: false, reason: "malformed" });
  });

  it("reads WebP sizes from VP8X (extended, animated), VP8L and VP8 chunks", () => {
    const vp8x = [0x12, 0, 0, 0, ...le24(999), ...le24(499)];
    expect(
      sniffImage(
        webp([
          ["VP8X", vp8x],
          ["ANIM", [0, 0, 0, 0, 0, 0]],
          ["ANMF", [1, 2, 3]],
        ]),
      ),
    ).toEqual({
      ok: true,
      type: "image/webp",
      width: 1000,
      height: 500,
    });
    // VP8L: 0x2f, then 14 bits width − 1 and 14 bits height − 1.
    const bits = (20 - 1) | ((30 - 1) << 14);
    expect(sniffImage(webp([["VP8L", [0x2f, ...le32(bits)]]]))).toMatchObject({ width: 20, height: 30 });
    const vp8 = [0, 0, 0, 0x9d, 0x01, 0x2a, 64, 0, 48, 0];
    expect(sniffImage(webp([["VP8 ", vp8]]))).toMatchObject({ width: 64, height: 48 });
    // Metadata alone is not an image.
    expect(
      sniffImage(
        webp([
          ["VP8X", vp8x],
          ["EXIF", [1]],
        ]),
      ),
    ).toMatchObject({ ok: false, reason: "malformed" });
    const cut = webp([["VP8 ", vp8]]);
    expect(sniffImage(cut.slice(0, cut.length - 1))).toMatchObject({ ok: false, reason: "malformed" });
  });

  it("refuses what is not one of the four types, whatever it starts like", () => {
    for (const b of [
      new Uint8Array(0),
      bytes("<svg xmlns='http://www.w3.org/2000/svg'/>"),
      bytes("RIFF", le32(4), "WAVE"),
      bytes("BM", [0, 0, 0, 0]),
      bytes([0x89], "PNX"),
    ]) {
      expect(sniffImage(b)).toMatchObject({ ok: false, reason: "unsupported" });
    }
  });

  it("refuses a PNG without image data or with a zero width", () => {
    const png = encodePng(4, 4);
    // Signature + IHDR (8 + 25 bytes), then IEND: drop the IDAT between them.
    const iend = png.slice(png.length - 12);
    expect(sniffImage(bytes(Array.from(png.slice(0, 33)), Array.from(iend)))).toMatchObject({
      ok: false,
      message: expect.stringMatching(/no image data/),
    });
    expect(sniffImage(encodePng(4, 4, undefined, { width: 0, height: 4 }))).toMatchObject({
      ok: false,
      message: expect.stringMatching(/zero width/),
    });
  });
});
