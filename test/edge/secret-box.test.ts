/**
 * Sealed secrets (edge/src/lib/secret-box.ts, edge/src/lib/dkim-key-box.ts): v2 values name the key
 * that sealed them and are bound to their owner by AES-GCM additional data; v1 values (no key id, no
 * AAD) still open; a SECRETS_KEY rotation (current + previous keys) keeps every value readable.
 * Keys are passed explicitly, so each test uses its own random keys and no environment juggling.
 */
import { describe, expect, it } from "vitest";
import { bytesToBase64 } from "../../edge/src/lib/base64.ts";
import {
  DkimKeyError,
  dkimKeyAad,
  openDkimPrivateKey,
  resealDkimPrivateKey,
  sealDkimPrivateKey,
} from "../../edge/src/lib/dkim-key-box.ts";
import {
  isSealedWithCurrent,
  keyId,
  open,
  seal,
  SealedSecretError,
  sealedKeyId,
} from "../../edge/src/lib/secret-box.ts";
import type { Config } from "../../edge/src/env.ts";

const newKey = () => bytesToBase64(crypto.getRandomValues(new Uint8Array(32)));

/** A value in the first stored form, exactly as the old code wrote it (AES-GCM, no AAD, no key id). */
async function sealV1(keyB64: string, plaintext: string): Promise<string> {
  const raw = Uint8Array.from(atob(keyB64), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new TextEncoder().encode(plaintext));
  return `v1.${bytesToBase64(iv)}.${bytesToBase64(new Uint8Array(ct))}`;
}

async function failure(p: Promise<unknown>): Promise<SealedSecretError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SealedSecretError);
  return err as SealedSecretError;
}

const PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";

describe("secret-box v2 values", () => {
  it("round-trips, names the sealing key's id and never contains the plaintext", async () => {
    const k = newKey();
    const sealed = await seal(k, PEM, "dkim:dom_A");
    expect(sealed).toMatch(/^v2\.[0-9a-f]{16}\.[A-Za-z0-9+/]+=*\.[A-Za-z0-9+/]+=*$/);
    expect(sealedKeyId(sealed)).toBe(await keyId(k));
    expect(sealed).not.toContain("PRIVATE KEY");
    expect(await open(k, sealed, "dkim:dom_A")).toBe(PEM);
    // A random IV per value: sealing twice gives two different values.
    expect(await seal(k, PEM, "dkim:dom_A")).not.toBe(sealed);
  });

  it("does not open for another owner (AAD mismatch)", async () => {
    const k = newKey();
    const sealed = await seal(k, PEM, "dkim:dom_A");
    const err = await failure(open(k, sealed, "dkim:dom_B"));
    expect(err.reason).toBe("tampered");
    expect(err.message).toContain(`key id ${await keyId(k)}`);
  });

  it("does not open once a ciphertext byte is altered", async () => {
    const k = newKey();
    const [v, kid, iv, ct] = (await seal(k, PEM, "x")).split(".");
    const bytes = Uint8Array.from(atob(ct!), (c) => c.charCodeAt(0));
    bytes[0]! ^= 1;
    const err = await failure(open(k, [v, kid, iv, bytesToBase64(bytes)].join("."), "x"));
    expect(err.reason).toBe("tampered");
  });

  it("names an unknown key id and the configured one when the sealing key is not configured", async () => {
    const a = newKey();
    const b = newKey();
    const err = await failure(open(b, await seal(a, PEM, "x"), "x"));
    expect(err.reason).toBe("unknown_key");
    expect(err.message).toContain(await keyId(a));
    expect(err.message).toContain(`SECRETS_KEY (id ${await keyId(b)})`);
  });

  it("refuses a value in no known format", async () => {
    expect((await failure(open(newKey(), "plain text", "x"))).reason).toBe("malformed");
    expect((await failure(open(newKey(), "v3.a.b.c", "x"))).reason).toBe("malformed");
  });
});

describe("secret-box v1 values (stored before key ids)", () => {
  it("still open, with the current key or a previous one", async () => {
    const a = newKey();
    const b = newKey();
    const v1 = await sealV1(a, PEM);
    expect(sealedKeyId(v1)).toBeNull();
    expect(await open(a, v1, "ignored for v1")).toBe(PEM);
    expect(await open({ current: b, previous: [a] }, v1, "x")).toBe(PEM);
    expect(await isSealedWithCurrent(a, v1)).toBe(false);
  });

  it("fail as wrong_key when no configured key sealed them", async () => {
    const err = await failure(open(newKey(), await sealV1(newKey(), PEM), "x"));
    expect(err.reason).toBe("wrong_key");
    expect(err.message).toContain("SECRETS_KEY_PREVIOUS");
  });
});

describe("SECRETS_KEY rotation", () => {
  it("A seals; B current + A previous opens and re-seals under B; without A it still opens", async () => {
    const a = newKey();
    const b = newKey();
    const underA = await sealDkimPrivateKey({ current: a }, "dom_1", PEM);
    expect(sealedKeyId(underA)).toBe(await keyId(a));

    const rotating = { current: b, previous: [a] };
    expect(await open(rotating, underA, dkimKeyAad("dom_1"))).toBe(PEM);
    const outcome = await resealDkimPrivateKey(rotating, {
      domainId: "dom_1",
      domain: "mail.example.com",
      privateKeySealed: underA,
    });
    if (outcome.kind !== "resealed") throw new Error(`expected a re-seal, got ${JSON.stringify(outcome)}`);
    expect(sealedKeyId(outcome.sealed)).toBe(await keyId(b));

    // A dropped: the re-sealed value opens under B alone; the old one no longer does.
    expect(await open(b, outcome.sealed, dkimKeyAad("dom_1"))).toBe(PEM);
    expect((await failure(open(b, underA, dkimKeyAad("dom_1")))).reason).toBe("unknown_key");

    // Re-sealing again changes nothing.
    expect(
      await resealDkimPrivateKey(
        { current: b },
        { domainId: "dom_1", domain: "mail.example.com", privateKeySealed: outcome.sealed },
      ),
    ).toEqual({ kind: "current" });
  });

  it("re-sealing binds a v1 value to its domain", async () => {
    const a = newKey();
    const outcome = await resealDkimPrivateKey(
      { current: a },
      { domainId: "dom_2", domain: "mail.example.com", privateKeySealed: await sealV1(a, PEM) },
    );
    if (outcome.kind !== "resealed") throw new Error(`expected a re-seal, got ${JSON.stringify(outcome)}`);
    expect(await open(a, outcome.sealed, dkimKeyAad("dom_2"))).toBe(PEM);
    expect((await failure(open(a, outcome.sealed, dkimKeyAad("dom_3")))).reason).toBe("tampered");
  });

  it("a current-key value copied from another domain is reported, not passed as current", async () => {
    const a = newKey();
    const other = await sealDkimPrivateKey({ current: a }, "dom_other", PEM);
    const outcome = await resealDkimPrivateKey(
      { current: a },
      { domainId: "dom_4", domain: "mail.example.com", privateKeySealed: other },
    );
    expect(outcome.kind).toBe("failed");
  });
});

describe("openDkimPrivateKey (what the hub calls per outbox row)", () => {
  const config = (current: string, previous: string[] = []) =>
    ({ SECRETS_KEY: current, SECRETS_KEY_PREVIOUS: previous }) as unknown as Config;

  it("opens the key of the domain it was sealed for", async () => {
    const k = newKey();
    const sealed = await sealDkimPrivateKey({ current: k }, "dom_5", PEM);
    const dkim = { domainId: "dom_5", domain: "a.example.com", selector: "s", privateKeySealed: sealed };
    expect(await openDkimPrivateKey(config(k), dkim)).toBe(PEM);
  });

  it("opens a v1 value from an outbox entry enqueued before domain ids were recorded", async () => {
    const k = newKey();
    const dkim = { domain: "a.example.com", selector: "s", privateKeySealed: await sealV1(k, PEM) };
    expect(await openDkimPrivateKey(config(newKey(), [k]), dkim)).toBe(PEM);
  });

  it.each([
    ["copied onto another domain", "tampered", async (k: string) => ({ key: k, id: "dom_elsewhere" })],
    ["sealed with a key no longer configured", "unknown_key", async () => ({ key: newKey(), id: "dom_6" })],
  ] as const)("throws a DkimKeyError naming the domain when %s", async (_label, reason, sealer) => {
    const k = newKey();
    const { key, id } = await sealer(k);
    const sealed = await sealDkimPrivateKey({ current: key }, id, PEM);
    const dkim = { domainId: "dom_6", domain: "b.example.com", selector: "s", privateKeySealed: sealed };
    const err = await openDkimPrivateKey(config(k), dkim).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DkimKeyError);
    expect((err as DkimKeyError).reason).toBe(reason);
    expect((err as DkimKeyError).message).toMatch(
      /^DKIM key of b\.example\.com \(dom_6\) cannot be opened: /,
    );
  });
});
