/**
 * The drizzle handle the Worker builds per request (edge/src/db/client.ts) and the SHA-256 hex of
 * lib/crypto.ts, both on every request's path: the handle carries no relational schema (building one
 * walked every table per request), reads and writes through the binding or a D1 session it was given,
 * and the hex is the digest's.
 */
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createDb } from "../../edge/src/db/client.ts";
import { tenants } from "../../edge/src/db/schema.ts";
import { hexOf, sha256Hex } from "../../edge/src/lib/crypto.ts";

describe("createDb", () => {
  it("is a query builder over the binding or session it was given, without a relational schema", () => {
    const a = createDb(env.DB);
    expect(a.$client).toBe(env.DB);
    expect((a as unknown as { _: { schema: unknown } })._.schema).toBeUndefined();
    const session = env.DB.withSession("first-primary") as unknown as D1Database;
    const s = createDb(session);
    expect(s).not.toBe(a);
    expect(s.$client).toBe(session);
  });

  it("writes and reads through a handle on the binding and through a session's", async () => {
    const id = `tnt_dbclient_${Date.now()}`;
    await createDb(env.DB).insert(tenants).values({ id, name: "db client", createdAt: 1 });
    const viaBinding = await createDb(env.DB).select().from(tenants).where(eq(tenants.id, id));
    expect(viaBinding.map((t) => t.name)).toEqual(["db client"]);
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
