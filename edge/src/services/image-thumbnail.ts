/**
 * Decoding and thumbnails for the image library (docs/api/images.md#thumbnails), with photon
 * (@cf-wasm/photon, Rust's `image` crate compiled to WebAssembly; Workers load it as a compiled
 * WebAssembly module, the only way they run Wasm). Imported on first use, so a request that never
 * touches an image never instantiates it.
 *
 * Every upload is decoded in full once: a file whose headers parse but whose pixels do not (photon
 * fails) is refused, and the decoded size must agree with the headers'. The thumbnail fits in
 * THUMBNAIL_MAX × THUMBNAIL_MAX with the aspect ratio kept, made once at upload; an image that already
 * fits is its own thumbnail. A JPEG's thumbnail is a JPEG, every other type's a PNG (an animated
 * GIF or WebP's first frame).
 *
 * Memory: decoding holds the file, the decoded pixels and their RGBA copy at once, so uploads are
 * limited to MAX_PIXELS (checked on the headers before decoding) to stay well inside a Worker's
 * 128 MB; photon's objects are freed explicitly, since Wasm memory is not garbage-collected.
 */
import type { ImageType } from "./image-sniff.ts";

export const THUMBNAIL_MAX = 200;
/** 3840 × 2160 (4K UHD): the largest image an upload may be, in pixels. */
export const MAX_PIXELS = 3840 * 2160;
const JPEG_QUALITY = 80;

export interface Thumbnail {
  bytes: Uint8Array<ArrayBuffer>;
  contentType: "image/png" | "image/jpeg";
  width: number;
  height: number;
}

export type Decoded =
  { ok: true; width: number; height: number; thumbnail: Thumbnail | null } | { ok: false; message: string };

/** The size an image of `width` × `height` is shown at as a thumbnail. */
export function thumbnailSize(width: number, height: number): { width: number; height: number } {
  const scale = Math.min(1, THUMBNAIL_MAX / width, THUMBNAIL_MAX / height);
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

/**
 * Decodes `bytes` (already sniffed as `type`, `width` × `height` by its headers) and makes its
 * thumbnail, or null when the image already fits. Fails when photon cannot decode the pixels or
 * decodes another size than the headers say.
 */
export async function decodeWithThumbnail(
  bytes: Uint8Array,
  type: ImageType,
  width: number,
  height: number,
): Promise<Decoded> {
  const photon = await import("@cf-wasm/photon/workerd");
  let image: InstanceType<typeof photon.PhotonImage> | undefined;
  let small: InstanceType<typeof photon.PhotonImage> | undefined;
  try {
    try {
      image = photon.PhotonImage.new_from_byteslice(bytes);
    } catch {
      return { ok: false, message: "the image data cannot be decoded" };
    }
    if (image.get_width() !== width || image.get_height() !== height) {
      return {
        ok: false,
        message: `the image's headers say ${width}×${height} but its data is ${image.get_width()}×${image.get_height()}`,
      };
    }
    const size = thumbnailSize(width, height);
    if (size.width === width && size.height === height) return { ok: true, width, height, thumbnail: null };
    small = photon.resize(image, size.width, size.height, photon.SamplingFilter.Triangle);
    const jpeg = type === "image/jpeg";
    const out = jpeg ? small.get_bytes_jpeg(JPEG_QUALITY) : small.get_bytes();
    return {
      ok: true,
      width,
      height,
      thumbnail: {
        bytes: new Uint8Array(out),
        contentType: jpeg ? "image/jpeg" : "image/png",
        width: size.width,
        height: size.height,
      },
    };
  } finally {
    small?.free();
    image?.free();
  }
}
