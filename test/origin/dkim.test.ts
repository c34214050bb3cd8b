import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { signDkim } from "../../origin/src/compose/dkim.ts";

const raw = Buffer.from(
  "From: a@sender.test\r\nTo: b@dest.test\r\nSubject: hi\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\nMessage-ID: <m@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
);
const rsaPem = generateKeyPairSync("rsa", { modulusLength: 1024 })
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();

describe("signDkim", () => {
  it("prepends one relaxed/relaxed rsa-sha256 DKIM-Signature and keeps the message intact", async () => {
    const signed = await signDkim(raw, { domain: "sender.test", selector: "s1", privateKeyPem: rsaPem });
    const text = signed.toString();
    expect(text.startsWith("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.test;")).toBe(
      true,
    );
    expect(text.match(/^DKIM-Signature:/gm)).toHaveLength(1);
    expect(signed.subarray(signed.length - raw.length).equals(raw)).toBe(true);
    // Reply-To and Cc are absent, so they are not in h=.
    expect(text).not.toMatch(/h=[^;]*reply-to/i);
  });

  it("surfaces mailauth's errors array as DkimSignError instead of sending unsigned mail", async () => {
    // A selector with ";" would break out of its tag: mailauth refuses it and reports it in `errors`.
    await expect(
      signDkim(raw, { domain: "sender.test", selector: "bad;s=evil", privateKeyPem: rsaPem }),
    ).rejects.toThrow(/DKIM signing failed/);
  });

  it("refuses keys it cannot read or does not support", async () => {
    await expect(
      signDkim(raw, { domain: "sender.test", selector: "s1", privateKeyPem: "garbage" }),
    ).rejects.toThrow(/cannot be read/);
    const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    await expect(signDkim(raw, { domain: "sender.test", selector: "s1", privateKeyPem: ec })).rejects.toThrow(
      /not supported/,
    );
  });
});
