/**
 * Public ids: a readable prefix plus a ULID-like body (48-bit time + 80 random bits, Crockford base32),
 * so ids sort by creation time and leak nothing guessable. Works in Workers and Node (Web Crypto).
 */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

export function ulid(now: number = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let rand = "";
  for (const b of bytes) rand += ALPHABET[b % 32];
  return time + rand;
}

export type IdPrefix = "msg" | "evt" | "tnt" | "key" | "dom";
export const newId = (prefix: IdPrefix, now?: number) => `${prefix}_${ulid(now)}`;

/** Random lowercase hex, for API key secrets. */
export function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");
}
