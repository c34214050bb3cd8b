/** Small Web Crypto helpers shared by auth, link and admin code. */

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** Lower-case hex of `bytes`, by table (on every API request: the key's hash). */
export function hexOf(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += HEX[b]!;
  return out;
}

export async function sha256Hex(input: string | ArrayBuffer): Promise<string> {
  const data = typeof input === "string" ? new TextEncoder().encode(input) : input;
  return hexOf(new Uint8Array(await crypto.subtle.digest("SHA-256", data)));
}

/**
 * Constant-time string comparison for secrets (tokens). Hashing both sides first makes the
 * comparison length-independent, so neither content nor length leaks through timing.
 */
export async function timingSafeEqualStrings(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", new TextEncoder().encode(a)),
    crypto.subtle.digest("SHA-256", new TextEncoder().encode(b)),
  ]);
  // workerd provides crypto.subtle.timingSafeEqual (a non-standard extension).
  return (
    crypto.subtle as SubtleCrypto & { timingSafeEqual(a: ArrayBuffer, b: ArrayBuffer): boolean }
  ).timingSafeEqual(ha, hb);
}
