/**
 * Dashboard login passwords (docs/dashboard.md#sign-in): PBKDF2-SHA256 through Web Crypto, a random
 * 16-byte salt per login, 100,000 iterations.
 *
 * Why 100,000: workerd refuses PBKDF2 above 100,000 iterations (a DoS guard of the runtime, see
 * https://github.com/cloudflare/workerd/issues/1346), so a higher count could never be verified here. OWASP's
 * Password Storage Cheat Sheet asks 600,000 for PBKDF2-SHA256; the gap is covered by the sign-in
 * throttle (services/dashboard-sessions.ts) and a minimum length. The count is stored per row, so a
 * later runtime with a higher cap can raise it for new passwords without breaking old ones.
 */
import { base64ToBytes, bytesToBase64 } from "../lib/base64.ts";
import { timingSafeEqualStrings } from "../lib/crypto.ts";

export const PBKDF2_ITERATIONS = 100_000;
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 1024;

export interface PasswordHash {
  hash: string;
  salt: string;
  iterations: number;
}

async function derive(password: string, salt: Uint8Array<ArrayBuffer>, iterations: number): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    key,
    256,
  );
  return bytesToBase64(new Uint8Array(bits));
}

export async function hashPassword(password: string): Promise<PasswordHash> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  return {
    hash: await derive(password, salt, PBKDF2_ITERATIONS),
    salt: bytesToBase64(salt),
    iterations: PBKDF2_ITERATIONS,
  };
}

/** Compared in constant time (lib/crypto.ts). */
export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  // A row the runtime could not verify (or a tampered one) fails instead of throwing.
  if (!Number.isInteger(stored.iterations) || stored.iterations < 1 || stored.iterations > PBKDF2_ITERATIONS)
    return false;
  const derived = await derive(password, base64ToBytes(stored.salt), stored.iterations);
  return timingSafeEqualStrings(derived, stored.hash);
}

/** A password a login may be given, or why not. */
export function passwordProblem(password: string): string | null {
  if (password.length < MIN_PASSWORD_LENGTH)
    return `password must be at least ${MIN_PASSWORD_LENGTH} characters`;
  if (password.length > MAX_PASSWORD_LENGTH)
    return `password must be at most ${MAX_PASSWORD_LENGTH} characters`;
  return null;
}
