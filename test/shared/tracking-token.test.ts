/**
 * Tracking tokens (shared/tracking/token.ts): what one key signs verifies, and nothing else does —
 * not a forged tag, not a changed claim (another tenant, message or recipient), not another key,
 * not a click token pointed at another URL; non-tokens are 404, tampered ones 400.
 */
import { describe, expect, it } from "vitest";
import {
  base64url,
  createTrackingSigner,
  deriveTrackingKey,
  fromBase64url,
  isRedirectableUrl,
  TAG_BYTES,
} from "../../shared/tracking/token.ts";

const key = await deriveTrackingKey("test-tracking-secret-0123456789abcdef");
const signer = createTrackingSigner(key);
const claims = { tenantId: "tnt_A", messageId: "msg_01", recipient: "ann@example.net" };

/** The token with its claims JSON replaced (the tag kept): what an attacker can build. */
function withClaims(token: string, fields: unknown[]): string {
  const tag = token.split(".")[1]!;
  return `${base64url(new TextEncoder().encode(JSON.stringify(fields)))}.${tag}`;
}

describe("deriveTrackingKey", () => {
  it("is 32 bytes, deterministic, and not the secret itself", async () => {
    const again = await deriveTrackingKey("test-tracking-secret-0123456789abcdef");
    expect(key.length).toBe(32);
    expect(base64url(again)).toBe(base64url(key));
    expect(new TextDecoder().decode(key)).not.toContain("test-tracking-secret");
    const other = await deriveTrackingKey("another-tracking-secret-0123456789abcd");
    expect(base64url(other)).not.toBe(base64url(key));
  });
});

describe("open tokens", () => {
  it("round-trips the claims", async () => {
    const t = await signer.sign("open", claims);
    expect(t).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(fromBase64url(t.split(".")[1]!)!.length).toBe(TAG_BYTES);
    expect(await signer.verifyOpen(t)).toEqual({ ok: true, claims });
  });

  it("refuses a changed tenant, message or recipient with 400 (the tag no longer matches)", async () => {
    const t = await signer.sign("open", claims);
    for (const fields of [
      ["o", "tnt_B", "msg_01", "ann@example.net"],
      ["o", "tnt_A", "msg_02", "ann@example.net"],
      ["o", "tnt_A", "msg_01", "bob@example.net"],
    ]) {
      const r = await signer.verifyOpen(withClaims(t, fields));
      expect(r).toMatchObject({ ok: false, status: 400 });
    }
  });

  it("refuses a flipped tag bit and a token of another key with 400", async () => {
    const t = await signer.sign("open", claims);
    const [c, tag] = t.split(".") as [string, string];
    const bytes = fromBase64url(tag)!;
    bytes[TAG_BYTES - 1]! ^= 1;
    expect(await signer.verifyOpen(`${c}.${base64url(bytes)}`)).toMatchObject({ ok: false, status: 400 });
    const otherSigner = createTrackingSigner(
      await deriveTrackingKey("another-tracking-secret-0123456789abcd"),
    );
    const forged = await otherSigner.sign("open", claims);
    expect(await signer.verifyOpen(forged)).toMatchObject({ ok: false, status: 400 });
  });

  it("answers 404 for what is not a token: garbage, wrong kind, wrong shape, short tag", async () => {
    const click = await signer.sign("click", claims, "https://example.com/");
    const open = await signer.sign("open", claims);
    const cases = [
      "",
      "abc",
      "a.b.c",
      "!!!.???",
      click, // a click token is not an open token
      withClaims(open, ["o", "tnt_A", "msg_01"]),
      withClaims(open, { kind: "o" } as unknown as unknown[]),
      `${open.split(".")[0]}.${base64url(new Uint8Array(8))}`,
      "x".repeat(5000),
    ];
    for (const t of cases) expect(await signer.verifyOpen(t)).toMatchObject({ ok: false, status: 404 });
  });
});

describe("click tokens", () => {
  const url = "https://shop.example.com/item?id=7&ref=mail";

  it("verifies only with the URL it was signed for", async () => {
    const t = await signer.sign("click", claims, url);
    expect(await signer.verifyClick(t, url)).toEqual({ ok: true, claims: { ...claims, url } });
    for (const other of [
      "https://evil.example/",
      "https://shop.example.com/item?id=8&ref=mail",
      `${url}&x=1`,
      "https://shop.example.com/item?id=7&ref=mail#frag",
    ]) {
      expect(await signer.verifyClick(t, other)).toMatchObject({ ok: false, status: 400 });
    }
  });

  it("needs u (400 when missing) and only redirects to absolute http(s)", async () => {
    const t = await signer.sign("click", claims, url);
    expect(await signer.verifyClick(t, null)).toMatchObject({ ok: false, status: 400 });
    for (const bad of [
      "javascript:alert(1)",
      "//evil.example/",
      "/relative",
      "data:text/html,x",
      "https://u:p@x.example/",
    ]) {
      expect(isRedirectableUrl(bad)).toBe(false);
      expect(await signer.verifyClick(t, bad)).toMatchObject({ ok: false, status: 400 });
    }
    await expect(signer.sign("click", claims, "javascript:alert(1)")).rejects.toThrow(/http/);
  });

  it("an open token's tag does not make a click token (kinds are bound)", async () => {
    const open = await signer.sign("open", claims);
    const asClick = withClaims(open, ["c", "tnt_A", "msg_01", "ann@example.net"]);
    expect(await signer.verifyClick(asClick, url)).toMatchObject({ ok: false, status: 400 });
  });
});

describe("unsubscribe tokens", () => {
  it("carry the ASM group and the groups to display, bound by the tag", async () => {
    const u = { ...claims, asmGroupId: 12, groupsToDisplay: [12, 13] };
    const t = await signer.sign("unsubscribe", u);
    expect(await signer.verifyUnsubscribe(t)).toEqual({ ok: true, claims: u });
    const widened = withClaims(t, ["u", "tnt_A", "msg_01", "ann@example.net", 12, [12, 13, 99]]);
    expect(await signer.verifyUnsubscribe(widened)).toMatchObject({ ok: false, status: 400 });
    const noGroup = await signer.sign("unsubscribe", { ...claims, asmGroupId: null, groupsToDisplay: [] });
    expect(await signer.verifyUnsubscribe(noGroup)).toMatchObject({ ok: true, claims: { asmGroupId: null } });
  });
});
