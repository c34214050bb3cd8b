/**
 * The drizzle handle the Worker builds once per binding (edge/src/db/client.ts) and the SHA-256 hex of
 * lib/crypto.ts, both on every request's path: the shared handle reads and writes like a fresh one,
 * a D1 session gets a handle of its own, and the hex is the digest's.
 */
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import { tenants } from "../../edge/src/db/schema.ts";
import { hexOf, sha256Hex } from "../../edge/src/lib/crypto.ts";

describe("createDb", () => {
  it("returns one handle per binding object, and a separate one for a D1 session", () => {
    const a = createDb(env.DB);
    expect(createDb(env.DB)).toBe(a);
    expect(a.$client).toBe(env.DB);
    const session = env.DB.withSession("first-primary") as unknown as D1Database;
    const s = createDb(session);
    expect(s).not.toBe(a);
    expect(s.$client).toBe(session);
  });

  it("writes and reads through the shared handle and through a session's", async () => {
    const id = `tnt_dbclient_${Date.now()}`;
    await createDb(env.DB).insert(tenants).values({ id, name: "db client", createdAt: 1 });
    const viaShared = await createDb(env.DB).select().from(tenants).where(eq(tenants.id, id));
    expect(viaShared.map((t) => t.name)).toEqual(["db client"]);
    const session = createDb(env.DB.withSession("first-primary") as unknown as D1Database);
    const viaSession = await session.select({ name: tenants.name }).from(tenants).where(eq(tenants.id, id));
    expect(viaSession).toEqual([{ name: "db client" }]);
  });
});

describe("sha256Hex", () => {
  it("is the lower-case hex of the SHA-256 digest, for strings and bytes alike", async () => {
    // FIPS 180-2, appendix B.1.
    const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    expect(await sha256Hex("abc")).toBe(abc);
    expect(await sha256Hex(new TextEncoder().encode("abc").buffer as ArrayBuffer)).toBe(abc);
    expect(hexOf(new Uint8Array([0, 1, 15, 16, 127, 128, 254, 255]))).toBe("00010f107f80feff");
  });
});
