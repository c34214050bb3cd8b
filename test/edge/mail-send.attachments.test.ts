/**
 * Attachments and large bodies at the edge (docs/api/sendgrid.md#attachments): a live send stores
 * each attachment in R2 once per request, content-addressed under the tenant, and its jobs carry
 * references, never the bytes; bodies too large for a link frame travel by reference too; sandbox
 * stores nothing; SendGrid's validation errors; the origin's blob route (ORIGIN_TOKEN, only the
 * keys the send path writes); and the retention sweep of past days.
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { blobDay, blobRetentionMs, sweepBlobDays } from "../../edge/src/services/blobs.ts";
import { INLINE_BODY_BYTES } from "../../edge/src/services/message-blobs.ts";
import {
  call,
  mailBody,
  openLink,
  resetHub,
  sendMail,
  setupTenant,
  storedMessageCount,
  type LinkClient,
  type TenantFixture,
} from "./helpers.ts";

const HELP = "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send";

let t: TenantFixture;
beforeAll(async () => {
  t = await setupTenant();
});

const links: LinkClient[] = [];
beforeEach(async () => {
  await resetHub();
});
afterEach(async () => {
  for (const l of links.splice(0)) l.send({ type: "ping" });
  await resetHub();
});

const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
async function sha256(data: Uint8Array | string): Promise<string> {
  const input = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", input));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function tenantObjects(tenantId: string): Promise<{ key: string; size: number }[]> {
  const out: { key: string; size: number }[] = [];
  const listed = await env.BLOBS.list({ prefix: `blobs/${blobDay(Date.now())}/${tenantId}/` });
  for (const o of listed.objects) out.push({ key: o.key, size: o.size });
  return out;
}

/** Jobs as an origin receives them, over a real link to hub-0. */
async function jobsOverLink(count: number): Promise<DeliveryJob[]> {
  const link = await openLink();
  links.push(link);
  await link.hello(100);
  return link.jobs(count, 5000);
}

const PDF = bytes(50_000, 1);
const PNG = bytes(2_000, 2);

describe("post /v3/mail/send with attachments, live", () => {
  it("one request with 3 personalizations stores each attachment once; every job carries the references", async () => {
    const fresh = await setupTenant();
    const res = await sendMail(
      fresh.liveKey,
      mailBody(fresh.from, {
        personalizations: [1, 2, 3].map((n) => ({ to: [{ email: `r${n}@example.net` }] })),
        content: [
          { type: "text/plain", value: "see attached" },
          { type: "text/html", value: '<img src="cid:logo">' },
        ],
        attachments: [
          { content: b64(PDF), filename: "report.pdf", type: "application/pdf" },
          {
            content: b64(PNG),
            filename: "logo.png",
            type: "image/png",
            disposition: "inline",
            content_id: "logo",
          },
          // The same bytes under another name: one object, two parts.
          { content: b64(PDF), filename: "copy.pdf" },
        ],
      }),
    );
    expect(res.status, await res.clone().text()).toBe(202);

    const objects = await tenantObjects(fresh.tenantId);
    const [pdfSha, pngSha] = [await sha256(PDF), await sha256(PNG)];
    expect(objects.map((o) => o.key.split("/")[3]).sort()).toEqual([pdfSha, pngSha].sort());
    const stored = await env.BLOBS.get(objects.find((o) => o.key.endsWith(pdfSha))!.key);
    expect(new Uint8Array(await stored!.arrayBuffer())).toEqual(PDF);

    const jobs = await jobsOverLink(3);
    expect(jobs.map((j) => j.recipients[0]).sort()).toEqual([
      "r1@example.net",
      "r2@example.net",
      "r3@example.net",
    ]);
    const day = blobDay(Date.now());
    for (const j of jobs) {
      expect(j.message.attachments).toEqual([
        {
          key: `blobs/${day}/${fresh.tenantId}/${pdfSha}`,
          size: PDF.length,
          sha256: pdfSha,
          filename: "report.pdf",
          type: "application/pdf",
          disposition: "attachment",
        },
        {
          key: `blobs/${day}/${fresh.tenantId}/${pngSha}`,
          size: PNG.length,
          sha256: pngSha,
          filename: "logo.png",
          type: "image/png",
          disposition: "inline",
          contentId: "logo",
        },
        {
          key: `blobs/${day}/${fresh.tenantId}/${pdfSha}`,
          size: PDF.length,
          sha256: pdfSha,
          filename: "copy.pdf",
          type: "application/octet-stream",
          disposition: "attachment",
        },
      ]);
      // No bytes in the job: it stays small whatever the attachments weigh.
      expect(JSON.stringify(j).length).toBeLessThan(5_000);
    }
  });

  it("the same request again (a client's retry) adds no object", async () => {
    const fresh = await setupTenant();
    const body = mailBody(fresh.from, { attachments: [{ content: b64(PNG), filename: "a.png" }] });
    expect((await sendMail(fresh.liveKey, body)).status).toBe(202);
    expect((await sendMail(fresh.liveKey, body)).status).toBe(202);
    expect(await tenantObjects(fresh.tenantId)).toHaveLength(1);
  });

  it("an HTML body too large for a link frame travels by reference; the text stays inline", async () => {
    const fresh = await setupTenant();
    const html = `<p>${"ü".repeat(1_500_000)}</p>`; // 3 MB of UTF-8
    const res = await sendMail(
      fresh.liveKey,
      mailBody(fresh.from, {
        content: [
          { type: "text/plain", value: "short" },
          { type: "text/html", value: html },
        ],
      }),
    );
    expect(res.status, await res.clone().text()).toBe(202);
    const [job] = await jobsOverLink(1);
    const htmlSha = await sha256(html);
    expect(job!.message.text).toBe("short");
    expect(job!.message.html).toBeUndefined();
    expect(job!.message.htmlRef).toEqual({
      key: `blobs/${blobDay(Date.now())}/${fresh.tenantId}/${htmlSha}`,
      size: new TextEncoder().encode(html).length,
      sha256: htmlSha,
    });
    const stored = await env.BLOBS.get(job!.message.htmlRef!.key);
    expect(await stored!.text()).toBe(html);
  });

  it("bodies within the inline limit stay in the job and touch no R2", async () => {
    const fresh = await setupTenant();
    const text = "a".repeat(INLINE_BODY_BYTES - 2); // JSON adds the two quotes
    expect(
      (
        await sendMail(
          fresh.liveKey,
          mailBody(fresh.from, { content: [{ type: "text/plain", value: text }] }),
        )
      ).status,
    ).toBe(202);
    const [job] = await jobsOverLink(1);
    expect(job!.message.text).toBe(text);
    expect(job!.message.textRef).toBeUndefined();
    expect(await tenantObjects(fresh.tenantId)).toEqual([]);
  });
});

describe("post /v3/mail/send with attachments, sandbox", () => {
  it("validates the same way and stores nothing in R2", async () => {
    const fresh = await setupTenant();
    const res = await sendMail(
      fresh.testKey,
      mailBody(fresh.from, {
        content: [{ type: "text/html", value: `<p>${"x".repeat(400_000)}</p>` }],
        attachments: [{ content: b64(PDF), filename: "report.pdf" }],
      }),
    );
    expect(res.status, await res.clone().text()).toBe(202);
    expect(await tenantObjects(fresh.tenantId)).toEqual([]);
  });
});

describe("post /v3/mail/send attachment validation (SendGrid's errors)", () => {
  async function expectErrors(body: Record<string, unknown>, errors: unknown[]): Promise<void> {
    const before = await storedMessageCount(t.tenantId);
    const res = await sendMail(t.liveKey, mailBody(t.from, body));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ errors });
    expect(await storedMessageCount(t.tenantId)).toBe(before);
    expect(await tenantObjects(t.tenantId)).toEqual([]);
  }

  it("content that is not base64", async () => {
    await expectErrors({ attachments: [{ content: "not base64!", filename: "a.txt" }] }, [
      {
        message: "The attachment content must be base64 encoded.",
        field: "attachments.0.content",
        help: `${HELP}#attachments.content`,
      },
    ]);
  });

  it("an inline attachment without content_id", async () => {
    await expectErrors(
      {
        attachments: [{ content: b64(PNG), filename: "logo.png", type: "image/png", disposition: "inline" }],
      },
      [
        {
          message: "The content_id parameter is required if disposition = 'inline'.",
          field: "attachments.0.content_id",
          help: `${HELP}#attachments.content-id`,
        },
      ],
    );
  });

  it("more than 10 attachments", async () => {
    await expectErrors(
      { attachments: Array.from({ length: 11 }, (_, i) => ({ content: "dGVzdA==", filename: `${i}.txt` })) },
      [
        {
          message: "There is a limit of 10 attachments per message. You provided 11 attachments.",
          field: "attachments",
          help: `${HELP}#attachments`,
        },
      ],
    );
  });

  it("a disposition other than inline or attachment", async () => {
    await expectErrors(
      { attachments: [{ content: "dGVzdA==", filename: "a.txt", disposition: "embedded" }] },
      [
        {
          message:
            'The disposition of your attachment can be either "inline" or "attachment". You provided [embedded].',
          field: "attachments.0.disposition",
          help: `${HELP}#attachments.disposition`,
        },
      ],
    );
  });
});

describe("get /origin/blobs/<key>", () => {
  let key: string;
  beforeAll(async () => {
    key = `blobs/${blobDay(Date.now())}/${t.tenantId}/${await sha256(PNG)}`;
    await env.BLOBS.put(key, PNG);
  });
  const get = (k: string, token?: string) =>
    call(`/origin/${k}`, token === undefined ? {} : { headers: { Authorization: `Bearer ${token}` } });

  it("serves a stored blob to the origin token", async () => {
    const res = await get(key, env.ORIGIN_TOKEN);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(PNG.length));
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(PNG);
  });

  it("401 without a token, with a wrong one, or with another secret of the edge", async () => {
    for (const token of [undefined, "wrong-token-0123456789abcdef0123456789", env.ADMIN_TOKEN, t.liveKey]) {
      const res = await get(key, token);
      expect(res.status, String(token)).toBe(401);
      await res.body?.cancel();
    }
  });

  it("404 for a key of another form, even one that exists, and for a missing blob", async () => {
    await env.BLOBS.put("other/secret.txt", "not for origins");
    for (const k of [
      "other/secret.txt",
      `blobs/${blobDay(Date.now())}/${t.tenantId}/${"0".repeat(64)}`,
      `blobs/${blobDay(Date.now())}/../other/${await sha256(PNG)}`,
      `blobs/x/${t.tenantId}/${await sha256(PNG)}`,
    ]) {
      const res = await get(k, env.ORIGIN_TOKEN);
      expect(res.status, k).toBe(404);
      await res.body?.cancel();
    }
  });
});

describe("blob retention (cron sweep)", () => {
  it("deletes the days whose retention has passed and keeps the rest", async () => {
    const now = Date.now();
    const retention = blobRetentionMs(72 * 3600_000); // 3 days of queue + 3 of scheduling + 1 of margin
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10).replaceAll("-", "");
    // A day's objects go once the day has ended and `retention` more has passed.
    const oldDay = day(now - retention - 86_400_000 - 3_600_000);
    const keptDay = day(now - retention + 3_600_000);
    const old = Array.from({ length: 3 }, (_, i) => `blobs/${oldDay}/tnt_sweep/${String(i).repeat(64)}`);
    const kept = `blobs/${keptDay}/tnt_sweep/${"9".repeat(64)}`;
    for (const k of [...old, kept]) await env.BLOBS.put(k, "x");

    expect(await sweepBlobDays(env.BLOBS, now, retention)).toBe(3);
    for (const k of old) expect(await env.BLOBS.head(k)).toBeNull();
    expect(await env.BLOBS.head(kept)).not.toBeNull();
    expect(
      await env.BLOBS.head(`blobs/${blobDay(Date.now())}/${t.tenantId}/${await sha256(PNG)}`),
    ).not.toBeNull();
  });
});
