/**
 * @cf-wasm/photon (the image library's decoder and thumbnails) loads and works inside workerd: the
 * test pool runs this file in the Worker's runtime. The Worker bundle under Miniflare is covered by
 * test/origin/images.miniflare.test.ts.
 */
import { describe, expect, it } from "vitest";
import { encodeGif, encodePng } from "./image-fixtures.ts";

describe("photon in workerd", () => {
  it("decodes a PNG written without photon, resizes it and re-encodes it", async () => {
    const { PhotonImage, resize, SamplingFilter } = await import("@cf-wasm/photon/workerd");
    const decoded = PhotonImage.new_from_byteslice(encodePng(40, 20));
    expect([decoded.get_width(), decoded.get_height()]).toEqual([40, 20]);
    const small = resize(decoded, 10, 5, SamplingFilter.Triangle);
    const again = PhotonImage.new_from_byteslice(small.get_bytes());
    expect([again.get_width(), again.get_height()]).toEqual([10, 5]);
    for (const i of [decoded, small, again]) i.free();
  });

  it("decodes GIF, and the JPEG and WebP it encodes", async () => {
    const { PhotonImage } = await import("@cf-wasm/photon/workerd");
    const gif = PhotonImage.new_from_byteslice(encodeGif(9, 7));
    expect([gif.get_width(), gif.get_height()]).toEqual([9, 7]);
    // Pixel (0,0) is palette entry 0 (red), (1,0) entry 1 (green).
    expect(Array.from(gif.get_raw_pixels().slice(0, 8))).toEqual([255, 0, 0, 255, 0, 255, 0, 255]);
    const src = PhotonImage.new_from_byteslice(encodePng(30, 12));
    for (const bytes of [src.get_bytes_jpeg(80), src.get_bytes_webp()]) {
      const d = PhotonImage.new_from_byteslice(bytes);
      expect([d.get_width(), d.get_height()]).toEqual([30, 12]);
      d.free();
    }
    gif.free();
    src.free();
  });

  it("a file it cannot decode throws, and the next decode still works", async () => {
    const { PhotonImage } = await import("@cf-wasm/photon/workerd");
    const png = encodePng(50, 50);
    expect(() => PhotonImage.new_from_byteslice(png.slice(0, png.length - 200))).toThrow();
    const ok = PhotonImage.new_from_byteslice(png);
    expect(ok.get_width()).toBe(50);
    ok.free();
  });
});
