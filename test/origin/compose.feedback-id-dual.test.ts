/**
 * The Feedback-ID header buildMime writes (Gmail's bulk sender guidelines: `a:b:c:SenderId`, here
 * tenant : From domain : mail type : "scaisend"), reserved against API callers, and composeMessage
 * signing a job with every key it carries (dual signing: `dkim` then `dkimAdditional`, RFC 8463),
 * each signature covering Feedback-ID and verifying with mailauth and with python3-dkim.
 */
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, describe, expect, it } from "vitest";
import { dkimpyVerdicts } from "../helpers/python-dkim.ts";
import { DeliveryJobSchema, jobDkimKeys, type DeliveryJob } from "../../shared/link/protocol.ts";
import { isReservedHeader } from "../../shared/mail/headers.ts";
import { validateMailSend } from "../../shared/sendgrid/mail-send.ts";
import { buildMime, feedbackId, MimeBuildError } from "../../origin/src/compose/build-mime.ts";
import { composeMessage } from "../../origin/src/compose/compose.ts";

const DOMAIN = "sender.test";

function job(over: Partial<DeliveryJob> = {}, message: Partial<DeliveryJob["message"]> = {}): DeliveryJob {
  return {
    jobId: "msg_1.1",
    messageId: "msg_1",
    tenantId: "tnt_01ABCDEF",
    attempt: 1,
    recipients: ["rcpt@example.net"],
    message: {
      from: { email: `news@${DOMAIN}`, name: "Sender" },
      to: [{ email: "rcpt@example.net" }],
      subject: "Hello",
      text: "body",
      headers: {},
      messageIdHeader: `m1@${DOMAIN}`,
      ...message,
    },
    dkim: null,
    ...over,
  };
}

const head = (raw: Buffer) => raw.subarray(0, raw.indexOf("\r\n\r\n")).toString("latin1");

describe("Feedback-ID", () => {
  it("buildMime writes one Feedback-ID: tenant : From domain : transactional : scaisend", async () => {
    const raw = await buildMime(job({}, { from: { email: "News@Mail.Sender.TEST" } }));
    const lines = head(raw).match(/^Feedback-ID:.*$/gim);
    expect(lines).toEqual(["Feedback-ID: tnt_01ABCDEF:mail.sender.test:transactional:scaisend"]);
  });

  it("keeps each field to [A-Za-z0-9._-], so no colon, space or line break of its own gets in", () => {
    const value = feedbackId(
      job({ tenantId: "t:1\r\nBcc: x@evil.test" }, { from: { email: "a@bücher.test" } }),
    );
    expect(value).toBe("t-1--Bcc--x-evil.test:b-cher.test:transactional:scaisend");
    expect(value.split(":")).toHaveLength(4);
    expect(value).not.toMatch(/[\r\n ]/);
  });

  it("is reserved: the edge refuses it from API callers, and buildMime refuses it in a job", async () => {
    expect(isReservedHeader("Feedback-ID")).toBe(true);
    const body = {
      personalizations: [{ to: [{ email: "rcpt@example.net" }] }],
      from: { email: `news@${DOMAIN}` },
      subject: "s",
      content: [{ type: "text/plain", value: "b" }],
      headers: { "feedback-id": "a:b:c:mine" },
    };
    const result = validateMailSend(body);
    expect(result.ok).toBe(false);
    expect(JSON.stringify(result)).toContain("Header cannot be one of the reserved keys.");
    await expect(buildMime(job({}, { headers: { "FEEDBACK-ID": "x:y:z:w" } }))).rejects.toThrow(
      MimeBuildError,
    );
  });
});

function key(type: "rsa" | "ed25519", selector: string) {
  const { privateKey, publicKey } =
    type === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ed25519");
  const spki = publicKey.export({ type: "spki", format: "der" });
  const p = type === "rsa" ? spki.toString("base64") : spki.subarray(spki.length - 32).toString("base64");
  return {
    dkim: {
      domain: DOMAIN,
      selector,
      privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    },
    host: `${selector}._domainkey.${DOMAIN}`,
    record: `v=DKIM1; k=${type}; p=${p}`,
  };
}
const rsa = key("rsa", "scaisend");
const ed = key("ed25519", "scaisend-ed1");
const records: Record<string, string> = { [rsa.host]: rsa.record, [ed.host]: ed.record };
const resolver = async (name: string) => {
  const value = records[name.toLowerCase()];
  if (value === undefined) throw Object.assign(new Error(`no record for ${name}`), { code: "ENOTFOUND" });
  return [[value]];
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-dual-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("composeMessage with a dual-signing job", () => {
  const dual = job({ dkim: rsa.dkim, dkimAdditional: [ed.dkim] });

  it("the job schema carries the extra keys, and an older job (dkim only) still parses with one key", () => {
    expect(jobDkimKeys(DeliveryJobSchema.parse(dual)).map((k) => k.selector)).toEqual([
      "scaisend",
      "scaisend-ed1",
    ]);
    const old = DeliveryJobSchema.parse(job({ dkim: rsa.dkim }));
    expect(old.dkimAdditional).toBeUndefined();
    expect(jobDkimKeys(old)).toEqual([rsa.dkim]);
    expect(jobDkimKeys(job())).toEqual([]);
  });

  for (const dkimFastPath of [true, false]) {
    it(`signs rsa-sha256 then ed25519-sha256 over the same headers incl. Feedback-ID; both verify with mailauth and python3-dkim (fast path ${dkimFastPath})`, async () => {
      const signed = await composeMessage(dual, { dkimFastPath });
      const text = head(signed).replace(/\r\n[ \t]+/g, " ");
      const sigs = [...text.matchAll(/^DKIM-Signature: (.*)$/gm)].map((m) => m[1]!);
      expect(sigs.map((s) => /a=([a-z0-9-]+)/.exec(s)?.[1])).toEqual(["rsa-sha256", "ed25519-sha256"]);
      const h = sigs.map((s) => /h=([^;]+)/.exec(s)![1]!.replace(/\s+/g, ""));
      expect(h[0]).toBe(h[1]);
      expect(h[0]!.toLowerCase().split(":")).toContain("feedback-id");

      const { results } = await dkimVerify(signed, { strict: true, resolver });
      expect(results.map((r) => [r.status.result, r.selector])).toEqual([
        ["pass", "scaisend"],
        ["pass", "scaisend-ed1"],
      ]);
      const file = path.join(tmp, `dual-${dkimFastPath}.eml`);
      fs.writeFileSync(file, signed);
      expect(dkimpyVerdicts([file], records)[file]).toEqual([true, true]);

      // A Feedback-ID changed in transit breaks both signatures (it is signed, RFC 6376 §5.4).
      const altered = Buffer.from(
        signed.toString("latin1").replace(/^Feedback-ID: tnt_01ABCDEF/m, "Feedback-ID: tnt_99OTHER"),
        "latin1",
      );
      const again = await dkimVerify(altered, { strict: true, resolver });
      expect(again.results.map((r) => r.status.result)).toEqual(["fail", "fail"]);
    });
  }

  it("a job with the RSA key alone gets one signature", async () => {
    const signed = await composeMessage(job({ dkim: rsa.dkim }));
    expect(head(signed).match(/^DKIM-Signature:/gm)).toHaveLength(1);
  });
});
