/**
 * buildMimeReusing (origin/src/compose/mime-template.ts) against buildMime, the reference: for a
 * corpus of contents (single part html or text, multipart/alternative, custom headers, cc and
 * reply-to, non-ASCII subject and sender name, long folded subject) and, per content, many
 * personalizations (plain and named To addresses, upper-case domains, several To addresses, long
 * Message-IDs), a reused message must be byte for byte buildMime's for that job — apart from the
 * multipart boundary, which is the first message's — and the reuse must actually happen where the
 * fields qualify and not where they do not (quoted or non-ASCII names, attachments). A content
 * whose every message has its own List-Unsubscribe (as tracking.ts writes it) is reused too, with the
 * field written per message, one line or folded, across the fold width; a value with white space is
 * not. Every reused message, signed, verifies with mailauth (strict) and with python3-dkim.
 */
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, describe, expect, it } from "vitest";
import { buildMime, type ComposableJob } from "../../origin/src/compose/build-mime.ts";
import { signDkim } from "../../origin/src/compose/dkim.ts";
import { buildMimeReusing, templateStats } from "../../origin/src/compose/mime-template.ts";
import type { LinkAddress } from "../../shared/link/protocol.ts";
import { dkimpyVerdicts } from "../helpers/python-dkim.ts";

const DOMAIN = "sender.test";
const DATE = new Date("2026-03-04T05:06:07Z");

/** A content whose List-Unsubscribe is this gets each message's own (unsubscribeUrl), as tracking.ts adds it. */
const PER_MESSAGE = "per message";
/** One recipient's unsubscribe URL; its length varies with the id, so some fields fold and some do not. */
const unsubscribeUrl = (id: string, length = 10 + ((id.length * 17) % 90)) =>
  `<https://edge.example.test/t/u/${"T".repeat(length)}.${id}>`;

function job(message: Partial<ComposableJob["message"]>, to: LinkAddress[], id: string): ComposableJob {
  const headers = message.headers ?? {};
  if (headers["List-Unsubscribe"] === PER_MESSAGE) {
    message = {
      ...message,
      headers: {
        ...headers,
        "List-Unsubscribe": unsubscribeUrl(id),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
      },
    };
  }
  return {
    jobId: `msg_${id}.1`,
    messageId: `msg_${id}`,
    tenantId: "tnt_1",
    attempt: 1,
    recipients: to.map((a) => a.email),
    message: {
      from: { email: `news@${DOMAIN}`, name: "Sender Name" },
      to,
      subject: "Hello",
      headers: {},
      messageIdHeader: `${id}@${DOMAIN}`,
      ...message,
    },
    dkim: null,
  };
}

const html = `<!doctype html><p>${"A paragraph with = signs and words. ".repeat(60)}</p>\n.<p>dot</p>\n`;
const contents: Array<[string, Partial<ComposableJob["message"]>]> = [
  ["html", { html }],
  ["text", { text: "plain text\n.line with a dot\n" }],
  ["text and html", { text: "plain", html }],
  [
    "custom headers, cc, reply-to",
    {
      html,
      headers: { "X-Campaign": "spring", "List-Unsubscribe": "<https://example.com/u?id=1>" },
      cc: [{ email: "cc@example.net", name: "Carbon Copy" }],
      replyTo: [{ email: "reply@example.net" }],
    },
  ],
  [
    "a List-Unsubscribe per message",
    { text: "plain", html, headers: { "X-Campaign": "spring", "List-Unsubscribe": PER_MESSAGE } },
  ],
  [
    "non-ASCII subject and sender, folded subject",
    {
      html,
      subject: `Grüße ✓ ${"a long subject with many words ".repeat(4)}`,
      from: { email: `news@${DOMAIN}`, name: "Jürgen «News»" },
    },
  ],
];

/** Personalizations whose To and Message-ID qualify for reuse. */
const reusable: Array<[LinkAddress[], string]> = [
  [[{ email: "user1@inbox.test" }], "a1"],
  [[{ email: "User.Two+tag@inbox.example.test", name: "User Two" }], "a2"],
  [[{ email: "x@inbox.test", name: "" }], "a3"],
  [[{ email: "one@inbox.test" }, { email: "two@inbox.test", name: "Second" }], "a4"],
  [[{ email: "u_5-x@mx-1.inbox.test", name: "A B C" }], `long-${"i".repeat(30)}`],
];
/** Personalizations that must be built by buildMime (the fields need quoting, encoding or folding). */
const notReusable: Array<[LinkAddress[], string]> = [
  [[{ email: "q@inbox.test", name: "Doe, John" }], "b1"],
  [[{ email: "User@Inbox.Example.TEST" }], "b0"],
  [[{ email: "n@inbox.test", name: "Zoë" }], "b2"],
  [[{ email: "s@inbox.test", name: "Two  Spaces" }], "b3"],
  [[{ email: `${"l".repeat(70)}@inbox.test` }], "b4"],
  [[{ email: "m@inbox.test" }], `long-${"m".repeat(70)}`],
];

/** The multipart boundaries of a message, in order of appearance. */
const boundaries = (raw: Buffer) => [
  ...new Set([...raw.toString("latin1").matchAll(/boundary="([^"]+)"/g)].map((m) => m[1]!)),
];
/** `raw` with each of its boundaries replaced by the one at the same position in `like`. */
function withBoundariesOf(raw: Buffer, like: Buffer): string {
  let text = raw.toString("latin1");
  const mine = boundaries(raw);
  const theirs = boundaries(like);
  expect(mine.length).toBe(theirs.length);
  mine.forEach((b, i) => (text = text.split(b).join(theirs[i]!)));
  return text;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-mime-template-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("buildMimeReusing ≡ buildMime", () => {
  it.each(contents)("%s: every personalization is buildMime's message", async (name, message) => {
    const first = await buildMimeReusing(job(message, [{ email: "first@inbox.test" }], `f-${name.length}`), {
      date: DATE,
    });
    for (const [to, id] of [...reusable, ...notReusable]) {
      const j = job(message, to, id);
      const hitsBefore = templateStats().hits;
      const ours = await buildMimeReusing(j, { date: DATE });
      const reference = await buildMime(j, { date: DATE });
      const reused = templateStats().hits > hitsBefore;
      expect(reused, `${name} / ${id}: reused`).toBe(reusable.some(([, rid]) => rid === id));
      if (boundaries(reference).length === 0) {
        expect(ours.toString("latin1"), `${name} / ${id}`).toBe(reference.toString("latin1"));
      } else {
        // The boundary of a reused message is the first message's; everything else is buildMime's.
        if (reused) expect(boundaries(ours)).toEqual(boundaries(first));
        expect(withBoundariesOf(ours, reference), `${name} / ${id}`).toBe(reference.toString("latin1"));
      }
    }
  });

  it("writes a per-message List-Unsubscribe as buildMime does, on one line or folded", async () => {
    const message = { html, headers: { "List-Unsubscribe": PER_MESSAGE } };
    const to = [{ email: "sweep@inbox.test" }];
    await buildMimeReusing(job(message, to, "sweep-first"), { date: DATE });
    // "List-Unsubscribe: <https://edge.example.test/t/u/" + length + ".sN>": from 57 characters to
    // 187, so across the 76 where MailComposer starts to fold the value onto a line of its own.
    const folded = new Set<boolean>();
    for (let length = 1; length <= 130; length++) {
      const j = job(message, to, `s${length}`);
      j.message.headers!["List-Unsubscribe"] = unsubscribeUrl(`s${length}`, length);
      const hitsBefore = templateStats().hits;
      const ours = await buildMimeReusing(j, { date: DATE });
      expect(templateStats().hits, `length ${length}: reused`).toBe(hitsBefore + 1);
      const reference = await buildMime(j, { date: DATE });
      expect(ours.toString("latin1"), `length ${length}`).toBe(reference.toString("latin1"));
      folded.add(reference.toString("latin1").includes("List-Unsubscribe:\r\n "));
    }
    expect([...folded].sort()).toEqual([false, true]);
  });

  it("builds a List-Unsubscribe with white space message by message", async () => {
    const message = { text: "plain", headers: { "List-Unsubscribe": "x" } };
    const to = [{ email: "ws@inbox.test" }];
    for (const id of ["w1", "w2", "w3"]) {
      const j = job(message, to, id);
      j.message.headers!["List-Unsubscribe"] =
        `<https://edge.example.test/t/u/${id}>, <mailto:u-${id}@example.test>`;
      const hitsBefore = templateStats().hits;
      const ours = await buildMimeReusing(j, { date: DATE });
      expect(templateStats().hits, id).toBe(hitsBefore);
      expect(ours.toString("latin1")).toBe((await buildMime(j, { date: DATE })).toString("latin1"));
    }
  });

  it("is not used for a job with attachments", async () => {
    const bytes = Buffer.from("attachment");
    const withAttachment = (id: string): ComposableJob => ({
      ...job(
        {
          text: "see attached",
          attachments: [
            {
              key: "blobs/x",
              size: bytes.length,
              sha256: "0".repeat(64),
              filename: "a.txt",
              type: "text/plain",
              disposition: "attachment",
            },
          ],
        },
        [{ email: "a@inbox.test" }],
        id,
      ),
      attachmentBytes: [bytes],
    });
    await buildMimeReusing(withAttachment("c1"), { date: DATE });
    const before = templateStats().hits;
    await buildMimeReusing(withAttachment("c2"), { date: DATE });
    expect(templateStats().hits).toBe(before);
  });

  it("reused messages, signed, verify with mailauth and python3-dkim", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const record = `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;
    const records: Record<string, string> = { [`s1._domainkey.${DOMAIN}`]: record };
    const key = {
      domain: DOMAIN,
      selector: "s1",
      privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    };
    const resolver = async (name: string) => {
      const value = records[name.toLowerCase()];
      if (value === undefined) throw Object.assign(new Error(`no record for ${name}`), { code: "ENOTFOUND" });
      return [[value]];
    };
    const files: string[] = [];
    for (const [name, message] of contents) {
      await buildMimeReusing(job(message, [{ email: "seed@inbox.test" }], `seed-${name.length}`));
      for (const [to, id] of reusable) {
        const before = templateStats().hits;
        const raw = await buildMimeReusing(job(message, to, `v-${id}`));
        expect(templateStats().hits).toBe(before + 1);
        const signed = await signDkim(raw, key, { signTime: DATE });
        const wire = Buffer.from(signed.toString("latin1").replace(/(?<!\r)\n/g, "\r\n"), "latin1");
        const { results } = await dkimVerify(wire, { strict: true, resolver, curTime: DATE });
        expect(
          results.map((r) => r.status.result),
          `${name} / ${id}`,
        ).toEqual(["pass"]);
        const file = path.join(tmp, `${files.length}.eml`);
        fs.writeFileSync(file, wire);
        files.push(file);
      }
    }
    const verdicts = dkimpyVerdicts(files, records);
    expect(files.filter((f) => JSON.stringify(verdicts[f]) !== "[true]")).toEqual([]);
  });
});
