import { describe, expect, it } from "vitest";
import { decodeVerp, encodeVerp, VERP_TAG_LENGTH } from "../../origin/src/delivery/verp.ts";

const secret = "test-verp-secret";
const domain = "bounces.example.com";

describe("VERP return path", () => {
  it("encodes bounces+<messageId>.<tag>@<domain> with a 10-char base32 tag", () => {
    const address = encodeVerp("msg_01JABCDEF", { secret, domain });
    expect(address).toMatch(
      new RegExp(`^bounces\\+msg_01JABCDEF\\.[a-z2-7]{${VERP_TAG_LENGTH}}@bounces\\.example\\.com$`),
    );
  });

  it("round-trips, also when the message id contains dots", () => {
    for (const messageId of ["msg_1", "a.b.c", "X-Y=Z"]) {
      expect(decodeVerp(encodeVerp(messageId, { secret, domain }), { secret })).toEqual({ messageId });
    }
  });

  it("is deterministic so retries keep the same return path", () => {
    expect(encodeVerp("msg_1", { secret, domain })).toBe(encodeVerp("msg_1", { secret, domain }));
  });

  it("survives an MTA that lowercases the tag, and angle brackets", () => {
    const address = encodeVerp("msg_1", { secret, domain });
    const [local, host] = address.split("@") as [string, string];
    const dot = local.lastIndexOf(".");
    const upperTag = `${local.slice(0, dot)}.${local.slice(dot + 1).toUpperCase()}@${host}`;
    expect(decodeVerp(`<${upperTag}>`, { secret })).toEqual({ messageId: "msg_1" });
  });

  it("rejects a forged or altered address", () => {
    const address = encodeVerp("msg_1", { secret, domain });
    expect(decodeVerp(address, { secret: "other-secret" })).toBeNull();
    expect(decodeVerp(address.replace("msg_1", "msg_2"), { secret })).toBeNull();
    const tagged = address.replace(
      /\.([a-z2-7]+)@/,
      (_m, tag: string) => `.${tag.slice(0, -1)}${tag.endsWith("a") ? "b" : "a"}@`,
    );
    expect(decodeVerp(tagged, { secret })).toBeNull();
  });

  it("rejects addresses that are not ours or are malformed", () => {
    expect(decodeVerp("postmaster@example.com", { secret })).toBeNull();
    expect(decodeVerp("bounces+notag@example.com", { secret })).toBeNull();
    expect(decodeVerp("bounces+.abc@example.com", { secret })).toBeNull();
    expect(decodeVerp("bounces+msg_1.short@example.com", { secret })).toBeNull();
  });

  it("honours a custom prefix", () => {
    const address = encodeVerp("msg_1", { secret, domain, prefix: "rp" });
    expect(address.startsWith("rp+msg_1.")).toBe(true);
    expect(decodeVerp(address, { secret, prefix: "rp" })).toEqual({ messageId: "msg_1" });
    expect(decodeVerp(address, { secret })).toBeNull();
  });

  it("refuses message ids that need quoting or overflow the 64-octet local part", () => {
    expect(() => encodeVerp("has space", { secret, domain })).toThrow();
    expect(() => encodeVerp("a\r\nb", { secret, domain })).toThrow();
    expect(() => encodeVerp("x".repeat(50), { secret, domain })).toThrow(/64/);
  });
});
