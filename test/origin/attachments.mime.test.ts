/**
 * Attachments on the origin: buildMime's MIME tree (multipart/mixed ⊃ multipart/alternative ⊃
 * [text, multipart/related ⊃ [html, inline parts]] ⊃ attachments), RFC 2231 / 2047 filenames,
 * parsed back with mailparser; DKIM over such a message (rsa, and rsa + ed25519) verifying with
 * mailauth and python3-dkim; and the blob step (blobs/resolve-job.ts with blobs/blob-fetcher.ts)
 * against a real HTTP server on loopback standing in for the edge's /origin/blobs route: fetched
 * once for several jobs, verified, a 404 fails, anything else defers, another tenant's key fails.
 */
import { createHash, generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { simpleParser } from "mailparser";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dkimpyVerdicts } from "../helpers/python-dkim.ts";
import {
  DeliveryJobSchema,
  type AttachmentRef,
  type BlobRef,
  type DeliveryJob,
  type RecipientOutcome,
} from "../../shared/link/protocol.ts";
import { buildMime, MimeBuildError, type ComposableJob } from "../../origin/src/compose/build-mime.ts";
import { composeMessage } from "../../origin/src/compose/compose.ts";
import { createBlobFetcher } from "../../origin/src/blobs/blob-fetcher.ts";
import { withBlobs } from "../../origin/src/blobs/resolve-job.ts";

const DOMAIN = "sender.test";
const TENANT = "tnt_01ATTACH";
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
  "base64",
);
const PDF = Buffer.concat([Buffer.from("%PDF-1.4\n"), Buffer.alloc(3000, 0xa7)]);
const CSV = Buffer.from("a;b\r\n1;2\r\n");
const NON_ASCII_NAME = "Rechnung März – № 7 😀.pdf";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
function ref(bytes: Buffer, tenant = TENANT): BlobRef {
  return { key: `blobs/20261202/${tenant}/${sha(bytes)}`, size: bytes.length, sha256: sha(bytes) };
}
function att(bytes: Buffer, over: Partial<AttachmentRef>): AttachmentRef {
  return {
    ...ref(bytes),
    filename: "f.bin",
    type: "application/octet-stream",
    disposition: "attachment",
    ...over,
  };
}

const attachments: AttachmentRef[] = [
  att(PNG, { filename: "logo.png", type: "image/png", disposition: "inline", contentId: "logo" }),
  att(PDF, { filename: NON_ASCII_NAME, type: "application/pdf" }),
  att(CSV, { filename: "data.csv", type: "text/csv" }),
];
const bytesOf = [PNG, PDF, CSV];

function job(message: Partial<DeliveryJob["message"]> = {}, over: Partial<DeliveryJob> = {}): DeliveryJob {
  return {
    jobId: "msg_a.1",
    messageId: "msg_a",
    tenantId: TENANT,
    attempt: 1,
    recipients: ["rcpt@example.net"],
    message: {
      from: { email: `news@${DOMAIN}` },
      to: [{ email: "rcpt@example.net" }],
      subject: "Invoice",
      text: "Your invoice is attached.",
      html: '<p>Your invoice <img src="cid:logo"></p>',
      headers: {},
      messageIdHeader: `a1@${DOMAIN}`,
      attachments,
      ...message,
    },
    dkim: null,
    ...over,
  };
}
const resolved = (j: DeliveryJob, bytes: Buffer[] = bytesOf): ComposableJob => ({
  ...j,
  attachmentBytes: bytes,
});

/** The MIME tree as nested content types (a tiny parser: enough for the messages buildMime writes). */
type Tree = { type: string; parts?: Tree[] };
function tree(entity: string): Tree {
  const split = entity.indexOf("\r\n\r\n");
  const header = entity.slice(0, split).replace(/\r\n[ \t]+/g, " ");
  const body = entity.slice(split + 4);
  const ct = /^content-type:\s*([^;\r\n]+)(.*)$/im.exec(header);
  const type = (ct?.[1] ?? "text/plain").trim().toLowerCase();
  if (!type.startsWith("multipart/")) return { type };
  const boundary = /boundary="?([^";]+)"?/i.exec(ct![2]!)![1]!;
  const chunks = body.split(`--${boundary}`).slice(1, -1);
  return { type, parts: chunks.map((c) => tree(c.replace(/^\r\n/, ""))) };
}

describe("buildMime with attachments", () => {
  it("mixed ⊃ [alternative ⊃ [text, related ⊃ [html, inline png]], pdf, csv]", async () => {
    const raw = await buildMime(resolved(job()));
    expect(tree(raw.toString("latin1"))).toEqual({
      type: "multipart/mixed",
      parts: [
        {
          type: "multipart/alternative",
          parts: [
            { type: "text/plain" },
            { type: "multipart/related", parts: [{ type: "text/html" }, { type: "image/png" }] },
          ],
        },
        { type: "application/pdf" },
        { type: "text/csv" },
      ],
    });
  });

  it("mailparser reads back every part: bytes, types, dispositions, the Content-ID and the non-ASCII filename", async () => {
    const raw = await buildMime(resolved(job()));
    // skipImageLinks: keep cid: references as sent (mailparser would inline them as data: URLs).
    const mail = await simpleParser(raw, { skipImageLinks: true });
    expect(mail.text?.trim()).toBe("Your invoice is attached.");
    expect(mail.html).toContain('src="cid:logo"');
    expect(
      mail.attachments.map((a) => ({
        filename: a.filename,
        type: a.contentType,
        disposition: a.contentDisposition,
        cid: a.cid,
        related: a.related === true,
        same: Buffer.compare(a.content, bytesOf[mail.attachments.indexOf(a)]!) === 0,
      })),
    ).toEqual([
      {
        filename: "logo.png",
        type: "image/png",
        disposition: "inline",
        cid: "logo",
        related: true,
        same: true,
      },
      {
        filename: NON_ASCII_NAME,
        type: "application/pdf",
        disposition: "attachment",
        cid: undefined,
        related: false,
        same: true,
      },
      {
        filename: "data.csv",
        type: "text/csv",
        disposition: "attachment",
        cid: undefined,
        related: false,
        same: true,
      },
    ]);
  });

  it("encodes the non-ASCII filename as RFC 2231 parameters and an RFC 2047 name, lines ≤ 998", async () => {
    const raw = (await buildMime(resolved(job()))).toString("latin1").replace(/\r\n[ \t]+/g, " ");
    const disposition = /^Content-Disposition: attachment;(.*)$/im.exec(
      raw.split("application/pdf")[1]!,
    )![1]!;
    expect(disposition).toMatch(/filename\*0\*=utf-8''Rechnung%20M%C3%A4rz/i);
    expect(raw).toMatch(/Content-Type: application\/pdf; name="?=\?UTF-8\?[QB]\?/i);
    expect(raw).not.toContain("März"); // no raw 8-bit filename anywhere
  });

  it("inline parts without HTML are attached like the rest (no related part); only attachments: mixed ⊃ text", async () => {
    const raw = await buildMime(resolved(job({ html: undefined })));
    expect(tree(raw.toString("latin1"))).toEqual({
      type: "multipart/mixed",
      parts: [
        { type: "text/plain" },
        { type: "image/png" },
        { type: "application/pdf" },
        { type: "text/csv" },
      ],
    });
  });

  it("refuses a job whose blobs were not fetched, and a CR/LF in a filename", async () => {
    await expect(buildMime(job())).rejects.toThrow(MimeBuildError);
    await expect(buildMime(resolved(job(), [PNG]))).rejects.toThrow(/not fetched/);
    await expect(buildMime(job({ html: undefined, htmlRef: ref(PNG) }))).rejects.toThrow(/not fetched/);
    const bad = job({ attachments: [att(CSV, { filename: "a.csv\r\nBcc: x@evil.test" })] });
    await expect(buildMime(resolved(bad, [CSV]))).rejects.toThrow(/CR or LF/);
  });

  it("the job schema takes the references (and refuses a key of another form)", () => {
    expect(DeliveryJobSchema.safeParse(job()).success).toBe(true);
    const bad = job({ attachments: [{ ...attachments[0]!, key: "../../etc/passwd" }] });
    expect(DeliveryJobSchema.safeParse(bad).success).toBe(false);
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

describe("DKIM over a message with attachments", () => {
  const rsa = key("rsa", "s1");
  const ed = key("ed25519", "s2");
  const records: Record<string, string> = { [rsa.host]: rsa.record, [ed.host]: ed.record };
  const resolver = async (name: string) => {
    const value = records[name.toLowerCase()];
    if (value === undefined) throw Object.assign(new Error(`no record for ${name}`), { code: "ENOTFOUND" });
    return [[value]];
  };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-att-"));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  for (const dkimFastPath of [true, false]) {
    it(`rsa and rsa + ed25519 verify with mailauth and python3-dkim (fast path ${dkimFastPath})`, async () => {
      const files: string[] = [];
      const cases: [string, Partial<DeliveryJob>][] = [
        ["rsa", { dkim: rsa.dkim }],
        ["dual", { dkim: rsa.dkim, dkimAdditional: [ed.dkim] }],
      ];
      for (const [name, over] of cases) {
        const signed = await composeMessage(resolved(job({}, over)), { dkimFastPath });
        const { results } = await dkimVerify(signed, { strict: true, resolver });
        expect(results.map((r) => r.status.result)).toEqual(name === "rsa" ? ["pass"] : ["pass", "pass"]);
        const file = path.join(tmp, `${name}-${dkimFastPath}.eml`);
        fs.writeFileSync(file, signed);
        files.push(file);
      }
      const verdicts = dkimpyVerdicts(files, records);
      expect(files.map((f) => verdicts[f])).toEqual([[true], [true, true]]);
    });
  }
});

describe("the blob step (fetch from the edge, verify, cache)", () => {
  const TOKEN = "origin-token-0123456789abcdef0123456789";
  const store = new Map<string, Buffer>();
  const requests: string[] = [];
  let mode: "ok" | "500" | "corrupt" = "ok";
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    for (const b of [...bytesOf, Buffer.from("a large html body ✓", "utf8")]) store.set(ref(b).key, b);
    server = http.createServer((req, res) => {
      requests.push(req.url ?? "");
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      if (mode === "500") return void res.writeHead(500).end();
      const bytes = store.get(decodeURIComponent((req.url ?? "").slice("/origin/".length)));
      if (!bytes) return void res.writeHead(404).end();
      const out = mode === "corrupt" ? Buffer.from(bytes).fill(0x41, 0, 1) : bytes;
      res.writeHead(200, { "content-length": String(out.length) }).end(out);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  function setup(token = TOKEN) {
    const seen: ComposableJob[] = [];
    const fetcher = createBlobFetcher({ edgeUrl: base, token, maxCacheBytes: 1024 * 1024, timeoutMs: 5_000 });
    const deliver = withBlobs(fetcher, async (j: DeliveryJob, _opts: { deadlineAt: number }) => {
      seen.push(j);
      return j.recipients.map((recipient): RecipientOutcome => ({
        recipient,
        status: "delivered",
        response: "250",
      }));
    });
    return { fetcher, deliver, seen };
  }
  const opts = () => ({ deadlineAt: Date.now() + 30_000 });

  it("fetches each blob once for several jobs, puts the body back and hands the bytes in order", async () => {
    mode = "ok";
    requests.length = 0;
    const html = Buffer.from("a large html body ✓", "utf8");
    const { fetcher, deliver, seen } = setup();
    const jobs = [1, 2, 3].map((n) => job({ html: undefined, htmlRef: ref(html) }, { jobId: `msg_a.${n}` }));
    const results = await Promise.all(jobs.map((j) => deliver(j, opts())));
    expect(results.flat().map((o) => o.status)).toEqual(["delivered", "delivered", "delivered"]);
    expect(requests).toHaveLength(4); // html + 3 attachments, whatever the number of jobs
    expect(fetcher.stats()).toMatchObject({ fetches: 4, cachedBlobs: 4 });
    expect(seen[0]!.message.html).toBe("a large html body ✓");
    expect(seen[0]!.message.htmlRef).toBeUndefined();
    expect(seen[0]!.attachmentBytes!.map((b) => sha(Buffer.from(b)))).toEqual(bytesOf.map(sha));
    // And the resolved job builds.
    const mail = await simpleParser(await buildMime(seen[2]!));
    expect(mail.attachments.map((a) => a.filename)).toEqual(["logo.png", NON_ASCII_NAME, "data.csv"]);
  });

  it("a deadline leaving an odd number of milliseconds still fetches (the timeout is whole milliseconds)", async () => {
    mode = "ok";
    // Half of an odd remainder is a fraction, which timers refuse (ERR_OUT_OF_RANGE); the fetcher's own
    // limit is above the job's share here, so the job's share is the one used. Four consecutive
    // deadlines give at least two odd remainders whatever the clock does between the calls.
    const fetcher = createBlobFetcher({ edgeUrl: base, token: TOKEN, maxCacheBytes: 0, timeoutMs: 60_000 });
    const deliver = withBlobs(fetcher, async (j: DeliveryJob) =>
      j.recipients.map((recipient): RecipientOutcome => ({
        recipient,
        status: "delivered",
        response: "250",
      })),
    );
    for (const extra of [20_001, 20_002, 20_003, 20_004]) {
      const out = await deliver(job(), { deadlineAt: Date.now() + extra });
      expect(
        out.map((o) => [o.status, o.response]),
        String(extra),
      ).toEqual([["delivered", "250"]]);
    }
    expect((await fetcher.get(attachments[0]!, { timeoutMs: 1_500.5 })).length).toBeGreaterThan(0);
  });

  it("a blob that is gone (404) fails the recipients with the reason", async () => {
    mode = "ok";
    const { deliver, seen } = setup();
    const gone = Buffer.from("deleted by retention");
    const out = await deliver(job({ attachments: [att(gone, { filename: "x.bin" })] }), opts());
    expect(out).toEqual([
      {
        recipient: "rcpt@example.net",
        status: "failed",
        response: expect.stringMatching(/no longer stored.*404/),
      },
    ]);
    expect(seen).toHaveLength(0);
  });

  it("an unreachable edge, a 5xx, a wrong token or corrupt bytes defer (retried later), never fail", async () => {
    const cases: [string, () => ReturnType<typeof setup>][] = [
      ["500", () => setup()],
      ["corrupt", () => setup()],
      ["ok", () => setup("wrong-token-0123456789abcdef0123456789")],
    ];
    for (const [m, make] of cases) {
      mode = m as typeof mode;
      const { deliver, seen } = make();
      const out = await deliver(job(), opts());
      expect(
        out.map((o) => o.status),
        m,
      ).toEqual(["deferred"]);
      expect(seen).toHaveLength(0);
    }
    mode = "ok";
    const down = createBlobFetcher({
      edgeUrl: "http://127.0.0.1:9",
      token: TOKEN,
      maxCacheBytes: 0,
      timeoutMs: 2_000,
    });
    const out = await withBlobs(down, async () => [])(job(), opts());
    expect(out.map((o) => o.status)).toEqual(["deferred"]);
    expect(out[0]!.response).toMatch(/Could not fetch/);
  });

  it("a job naming another tenant's blob fails without fetching it", async () => {
    mode = "ok";
    requests.length = 0;
    const { deliver } = setup();
    const other = { ...attachments[2]!, ...ref(CSV, "tnt_OTHER") };
    const out = await deliver(job({ attachments: [other] }), opts());
    expect(out.map((o) => o.status)).toEqual(["failed"]);
    expect(out[0]!.response).toMatch(/outside its tenant/);
    expect(requests).toHaveLength(0);
  });

  it("the cache stays within its bound (least recently used dropped first)", async () => {
    mode = "ok";
    const fetcher = createBlobFetcher({
      edgeUrl: base,
      token: TOKEN,
      maxCacheBytes: PDF.length + 5,
      timeoutMs: 5_000,
    });
    await fetcher.get(ref(CSV));
    await fetcher.get(ref(PDF));
    expect(fetcher.stats()).toMatchObject({ cachedBlobs: 1 });
    expect(fetcher.stats().cachedBytes).toBe(PDF.length);
    await fetcher.get(ref(PDF));
    expect(fetcher.stats()).toMatchObject({ fetches: 2, hits: 1 });
  });
});
