/**
 * The DKIM fast path (origin/src/compose/dkim.ts) against mailauth's dkimSign, the reference: for
 * each key type alone and for dual signing (rsa-sha256 then ed25519-sha256, RFC 8463), over a
 * corpus of messages (built by buildMime and written by hand: folded and oddly spaced headers,
 * duplicate fields, 8-bit bytes, long lines, empty and whitespace-only bodies, bare LFs, missing
 * final CRLF), with the timestamp pinned, the fast path must be taken and give byte-identical
 * output, and every signature of every signed message must verify with mailauth (strict, offline
 * resolver) and with a second, independent verifier: Debian's python3-dkim (dkimpy, ed25519 through
 * python3-nacl), run on files in a temporary folder.
 */
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, describe, expect, it } from "vitest";
import { dkimpyVerdicts } from "../helpers/python-dkim.ts";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { buildMime } from "../../origin/src/compose/build-mime.ts";
import { dkimSignatureFast, signDkim, type DkimKey } from "../../origin/src/compose/dkim.ts";

const SIGN_TIME = new Date("2026-03-04T05:06:07Z");
const DOMAIN = "sender.test";

function keyPair(type: "rsa" | "ed25519") {
  const { privateKey, publicKey } =
    type === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ed25519");
  const spki = publicKey.export({ type: "spki", format: "der" });
  // RFC 8463 §4.2: an ed25519 p= is the bare 32-byte key, not SubjectPublicKeyInfo.
  const p = type === "rsa" ? spki.toString("base64") : spki.subarray(spki.length - 32).toString("base64");
  return {
    selector: `s-${type}`,
    pem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    record: `v=DKIM1; k=${type}; p=${p}`,
  };
}
const keys = [keyPair("rsa"), keyPair("ed25519")];
const records = Object.fromEntries(keys.map((k) => [`${k.selector}._domainkey.${DOMAIN}`, k.record]));
const dkimKey = (k: (typeof keys)[number]): DkimKey => ({
  domain: DOMAIN,
  selector: k.selector,
  privateKeyPem: k.pem,
});
/** What a message is signed with: each key alone, and both (dual signing, rsa first). */
const signings: Array<{ name: string; keys: DkimKey[] }> = [
  { name: "s-rsa", keys: [dkimKey(keys[0]!)] },
  { name: "s-ed25519", keys: [dkimKey(keys[1]!)] },
  { name: "dual", keys: [dkimKey(keys[0]!), dkimKey(keys[1]!)] },
];

function job(message: Partial<DeliveryJob["message"]>): DeliveryJob {
  return {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "t_1",
    attempt: 1,
    recipients: ["rcpt@example.net"],
    message: {
      from: { email: `news@${DOMAIN}`, name: "Sender Name" },
      to: [{ email: "rcpt@example.net", name: "Rcpt" }],
      subject: "Hello",
      headers: {},
      messageIdHeader: `m1@${DOMAIN}`,
      ...message,
    },
    dkim: null,
  };
}

const HEAD = `From: Sender <news@${DOMAIN}>\r\nTo: rcpt@example.net\r\nSubject: hand made\r\nDate: Wed, 04 Mar 2026 05:06:07 +0000\r\nMessage-ID: <h@${DOMAIN}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n`;

async function corpus(): Promise<Array<[string, Buffer]>> {
  const date = new Date("2026-03-04T05:06:07Z");
  const built: Array<[string, Partial<DeliveryJob["message"]>]> = [
    ["text only", { text: "plain body\n" }],
    ["html only", { html: "<p>html body</p>\n<p>second\tline  with  spaces </p>\n" }],
    ["multipart/alternative", { text: "plain", html: "<p>html</p>" }],
    ["empty text", { text: "" }],
    ["8-bit text and subject", { subject: "Grüße ✓ — 日本語", text: "Grüße aus Köln\r\nÄÖÜ ß\r\n" }],
    ["long line", { text: `${"word ".repeat(400)}\n${"x".repeat(3000)}\n` }],
    ["long subject", { subject: "s".repeat(1200), text: "b" }],
    ["folded subject", { subject: "a fairly long subject ".repeat(10), text: "b" }],
    [
      "reply-to and cc",
      {
        text: "b",
        replyTo: [{ email: `reply@${DOMAIN}` }],
        cc: [{ email: "cc1@example.net", name: "C, One" }, { email: "cc2@example.net" }],
      },
    ],
    [
      "custom headers with tabs and runs of spaces",
      {
        text: "b",
        headers: { "X-Campaign": "a\tb   c ", "List-Unsubscribe": "<https://u.example/x>", "X-Empty": "" },
      },
    ],
    ["trailing blank lines", { text: "body\n\n\n\n" }],
    ["CRLF and LF mixed in content", { text: "a\r\nb\nc\r\n\r\n  indented\t\r\n" }],
  ];
  const out: Array<[string, Buffer]> = [];
  for (const [name, message] of built)
    out.push([`buildMime: ${name}`, await buildMime(job(message), { date })]);
  const hand: Array<[string, string]> = [
    ["empty body", `${HEAD}\r\n`],
    ["body of empty lines only", `${HEAD}\r\n\r\n\r\n\r\n`],
    ["no final CRLF", `${HEAD}\r\nlast line`],
    ["no final CRLF, trailing space", `${HEAD}\r\nlast line `],
    ["runs of spaces, no tab and no trailing space", `${HEAD}\r\nsome  double   spaced    words\r\n`],
    ["one tab inside a line", `${HEAD}\r\ncol1\tcol2\r\n`],
    ["space before a line break only", `${HEAD}\r\nline \r\nnext\r\n`],
    ["trailing whitespace and tabs", `${HEAD}\r\na  b\t\tc \r\n\t\r\n d \r\n\r\n`],
    [
      "folded headers, odd spacing",
      `From:   Sender\r\n\t<news@${DOMAIN}>\r\nTo:    rcpt@example.net  \r\nSUBJECT:\tfolded\r\n  over\r\n\t lines  \r\nDate: Wed, 04 Mar 2026 05:06:07 +0000\r\nMessage-ID: <h@${DOMAIN}>\r\n\r\nbody\r\n`,
    ],
    ["duplicate To headers", `${HEAD}To: second@example.net\r\n\r\nbody\r\n`],
    ["bare LF everywhere", HEAD.replace(/\r\n/g, "\n") + "\nline one\nline two  \n\n"],
    ["8-bit latin1 bytes", `${HEAD}Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 \xfc\xdf\r\n`],
    ["dot lines and long line", `${HEAD}\r\n.\r\n..leading dots\r\n${"y".repeat(5000)}\r\n`],
  ];
  for (const [name, text] of hand) out.push([`hand: ${name}`, Buffer.from(text, "latin1")]);
  return out;
}

/**
 * What the receiver gets: the SMTP DATA stream writes every bare LF as CRLF and ends the data with
 * a CRLF before the final "." (RFC 5321 §4.1.1.4; nodemailer's DataStream adds one when missing).
 */
const onTheWire = (raw: Buffer) => {
  const text = raw.toString("latin1").replace(/(?<!\r)\n/g, "\r\n");
  return Buffer.from(text.endsWith("\r\n") ? text : `${text}\r\n`, "latin1");
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-dkim-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("DKIM fast path ≡ mailauth dkimSign", async () => {
  const messages = await corpus();

  for (const signing of signings) {
    it(`${signing.name}: byte-identical to dkimSign on every message of the corpus, and the fast path was taken`, async () => {
      for (const [name, raw] of messages) {
        const fastHeader = dkimSignatureFast(raw, signing.keys, { signTime: SIGN_TIME });
        expect(fastHeader, name).not.toBeNull();
        const fast = await signDkim(raw, signing.keys, { signTime: SIGN_TIME });
        const reference = await signDkim(raw, signing.keys, { signTime: SIGN_TIME, fastPath: false });
        expect(fast.toString("latin1"), name).toBe(reference.toString("latin1"));
        expect(fast.subarray(0, fastHeader!.length).toString("latin1"), name).toBe(fastHeader);
        // One DKIM-Signature per key, in key order, each naming its own algorithm and selector.
        const sigs = [...fastHeader!.matchAll(/^DKIM-Signature: v=1; a=([a-z0-9-]+);[^]*?s=([a-z0-9-]+);/gm)];
        expect(
          sigs.map((m) => [m[1], m[2]]),
          name,
        ).toEqual(
          signing.keys.map((k) => [k.selector === "s-rsa" ? "rsa-sha256" : "ed25519-sha256", k.selector]),
        );
      }
    });
  }

  it("dual: both signatures cover the same header fields, Feedback-ID among them for built messages", async () => {
    const dual = signings[2]!.keys;
    for (const [name, raw] of messages) {
      const header = dkimSignatureFast(raw, dual, { signTime: SIGN_TIME })!;
      const h = [...header.replace(/\r\n[ \t]+/g, " ").matchAll(/; h=([^;]+);/g)].map((m) =>
        m[1]!.replace(/\s+/g, ""),
      );
      expect(h, name).toHaveLength(2);
      expect(h[0], name).toBe(h[1]);
      if (name.startsWith("buildMime:"))
        expect(h[0]!.toLowerCase().split(":"), name).toContain("feedback-id");
    }
  });

  it("a second key that cannot be used fails the whole message, on both paths", async () => {
    const raw = messages[0]![1];
    const rsa = dkimKey(keys[0]!);
    for (const fastPath of [true, false]) {
      await expect(
        signDkim(raw, [rsa, { domain: DOMAIN, selector: "s2", privateKeyPem: "garbage" }], { fastPath }),
      ).rejects.toThrow(/cannot be read/);
    }
    // A selector mailauth refuses: the fast path hands the message over, mailauth names the selector.
    await expect(
      signDkim(raw, [rsa, { ...dkimKey(keys[1]!), selector: "bad;s=evil" }], { signTime: SIGN_TIME }),
    ).rejects.toThrow(/DKIM signing failed \(s=bad;s=evil\)/);
    await expect(signDkim(raw, [])).rejects.toThrow(/at least one key/);
  });

  it("leaves to mailauth what it does not handle, with the same result", async () => {
    const k = dkimKey(keys[0]!);
    const loneCr = Buffer.from(`${HEAD}\r\nhalf\rline\r\n`, "latin1");
    expect(dkimSignatureFast(loneCr, k)).toBeNull();
    expect(
      (await signDkim(loneCr, k, { signTime: SIGN_TIME })).equals(
        await signDkim(loneCr, k, { signTime: SIGN_TIME, fastPath: false }),
      ),
    ).toBe(true);
    const noFrom = Buffer.from(HEAD.replace(/^From:.*\r\n/, "") + "\r\nbody\r\n");
    expect(dkimSignatureFast(noFrom, k)).toBeNull();
    await expect(signDkim(noFrom, k)).rejects.toThrow(/DKIM signing failed/);
    const unicodeDomain = { ...k, domain: "bücher.test" };
    expect(dkimSignatureFast(messages[0]![1], unicodeDomain)).toBeNull();
  });

  it("every signed message verifies with mailauth (strict) and with python3-dkim", async () => {
    const files: Array<{ name: string; file: string; signatures: number }> = [];
    const resolver = async (name: string) => {
      const value = records[name.toLowerCase()];
      if (value === undefined) throw Object.assign(new Error(`no record for ${name}`), { code: "ENOTFOUND" });
      return [[value]];
    };
    let i = 0;
    for (const signing of signings) {
      for (const [name, raw] of messages) {
        const wire = onTheWire(await signDkim(raw, signing.keys, { signTime: SIGN_TIME }));
        const { results } = await dkimVerify(wire, { strict: true, resolver, curTime: SIGN_TIME });
        expect(
          results.map((r) => [r.status.result, r.selector]),
          `${signing.name} ${name}`,
        ).toEqual(signing.keys.map((k) => ["pass", k.selector]));
        const file = path.join(tmp, `${String(i++).padStart(3, "0")}.eml`);
        fs.writeFileSync(file, wire);
        files.push({ name: `${signing.name} ${name}`, file, signatures: signing.keys.length });
      }
    }
    const verdicts = dkimpyVerdicts(
      files.map((f) => f.file),
      records,
    );
    const failed = files
      .filter((f) => JSON.stringify(verdicts[f.file]) !== JSON.stringify(Array(f.signatures).fill(true)))
      .map((f) => `${f.name}: ${JSON.stringify(verdicts[f.file])}`);
    expect(failed).toEqual([]);
    expect(Object.keys(verdicts)).toHaveLength(files.length);
  });
});
