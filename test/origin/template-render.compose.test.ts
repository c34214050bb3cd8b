/**
 * Stored templates rendered at the origin (docs/templates.md#where-rendering-happens): a job names
 * a template snapshot by reference; the blob step fetches it from the edge (a real HTTP server on
 * loopback standing in for /origin/templates), and the compose step renders it into the message
 * before building the MIME, parsed back here with mailparser. Dynamic templates (each, if, equals,
 * escaping, subject and preheader), legacy ones (<%subject%>, <%body%>, substitutions and sections,
 * values never re-scanned), a data-dependent failure as a value (the message fails with the reason),
 * and the same in a real compose worker thread.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { simpleParser } from "mailparser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DeliveryJobSchema,
  type DeliveryJob,
  type JobTemplate,
  type RecipientOutcome,
} from "../../shared/link/protocol.ts";
import { serializeSnapshot, type TemplateSnapshot } from "../../shared/templates/snapshot.ts";
import type { ComposableJob } from "../../origin/src/compose/build-mime.ts";
import { composeMessage, TemplateRenderError } from "../../origin/src/compose/compose.ts";
import { createComposePool } from "../../origin/src/compose/pool.ts";
import { createBlobFetcher } from "../../origin/src/blobs/blob-fetcher.ts";
import { withBlobs } from "../../origin/src/blobs/resolve-job.ts";

const TENANT = "tnt_01TEMPLATE";
const DOMAIN = "sender.test";

function snapshotOf(s: Omit<TemplateSnapshot, "format">, tenant = TENANT) {
  const bytes = Buffer.from(serializeSnapshot(s));
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  return { bytes, ref: { key: `templates/${tenant}/${sha256}`, size: bytes.length, sha256 } };
}

const dynamic = snapshotOf({
  generation: "dynamic",
  subject: "Order {{orderId}} for {{{name}}}",
  html: [
    "<html><body><p>Hi {{name}}, raw: {{{name}}}</p>",
    "<ul>{{#each items}}<li>{{@index}}:{{this.title}}{{#if @last}} (last){{/if}}</li>{{/each}}</ul>",
    '{{#equals status "paid"}}<b>Paid</b>{{else}}<b>Due</b>{{/equals}}',
    "</body></html>",
  ].join("\n"),
  text: "Hi {{name}}\n{{#each items}}- {{title}}\n{{/each}}",
  preheader: "Your order {{orderId}}",
});

const legacy = snapshotOf({
  generation: "legacy",
  subject: "<%subject%> | -brand-",
  html: "<h1>Hello -name-</h1><div><%body%></div><footer>%footer%</footer>",
  text: "Hello -name-\n<%body%>\n%footer%",
  preheader: null,
});

function job(message: Partial<DeliveryJob["message"]>, template: JobTemplate): DeliveryJob {
  return DeliveryJobSchema.parse({
    jobId: "msg_t.1",
    messageId: "msg_t",
    tenantId: TENANT,
    attempt: 1,
    recipients: ["rcpt@example.net"],
    message: {
      from: { email: `news@${DOMAIN}` },
      to: [{ email: "rcpt@example.net" }],
      subject: "",
      headers: {},
      messageIdHeader: `t1@${DOMAIN}`,
      template,
      ...message,
    },
    dkim: null,
  });
}

const dynamicTemplate = (data: Record<string, unknown>): JobTemplate => ({
  templateId: "d-0123456789abcdef0123456789abcdef",
  versionId: "v1",
  generation: "dynamic",
  snapshot: dynamic.ref,
  data,
});

const DATA = {
  name: `Ann <"O'Neil"> & co`,
  orderId: "A-17",
  status: "paid",
  items: [{ title: "Tea" }, { title: "Cups & saucers" }],
};

describe("rendering a stored template in the compose step", () => {
  it("renders a dynamic template: subject, each/if/equals, {{x}} escaped and {{{x}}} raw, text and preheader", async () => {
    const j: ComposableJob = { ...job({}, dynamicTemplate(DATA)), templateSnapshot: dynamic.bytes };
    const mail = await simpleParser(await composeMessage(j));
    expect(mail.subject).toBe(`Order A-17 for Ann <"O'Neil"> & co`);
    const html = String(mail.html);
    expect(html).toContain(
      '<p>Hi Ann &lt;&quot;O&#39;Neil&quot;&gt; &amp; co, raw: Ann <"O\'Neil"> & co</p>',
    );
    expect(html).toContain("<li>0:Tea</li><li>1:Cups &amp; saucers (last)</li>");
    expect(html).toContain("<b>Paid</b>");
    expect(html).not.toContain("<b>Due</b>");
    // The preheader is hidden text right after <body>, escaped like the HTML.
    expect(html).toMatch(/<body><div style="display:none[^"]*">Your order A-17<\/div><p>Hi/);
    expect(mail.text).toBe(`Hi Ann <"O'Neil"> & co\n- Tea\n- Cups & saucers\n`);
    expect(mail.headers.get("feedback-id")).toBe(`${TENANT}:${DOMAIN}:transactional:scaisend`);
  });

  it("uses the message's own subject when the template's subject renders empty", async () => {
    const empty = snapshotOf({
      generation: "dynamic",
      subject: "{{subject}}",
      html: "<p>x</p>",
      text: "",
      preheader: null,
    });
    const j: ComposableJob = {
      ...job({ subject: "From the request" }, { ...dynamicTemplate({}), snapshot: empty.ref }),
      templateSnapshot: empty.bytes,
    };
    const raw = await composeMessage(j);
    expect((await simpleParser(raw)).subject).toBe("From the request");
    // A template without text gives an HTML-only message.
    expect(raw.toString("latin1")).not.toMatch(/text\/plain/i);
  });

  it("renders a legacy template around the message's own subject and body, substitutions on the template's text", async () => {
    const template: JobTemplate = {
      templateId: "13b8f94f-bcae-4ec6-b752-70d6cb59f932",
      versionId: "v2",
      generation: "legacy",
      snapshot: legacy.ref,
      substitutions: { "-name-": "Ben", "-brand-": "Acme", "%footer%": "%footer_section%" },
      sections: { "%footer_section%": "Bye -name-" },
    };
    // The body was substituted at the edge already; a tag left in it (or put there by a value)
    // must not be scanned again at the origin.
    const j: ComposableJob = {
      ...job({ subject: "Your receipt", html: "<p>Paid -name-</p>", text: "Paid -name-" }, template),
      templateSnapshot: legacy.bytes,
    };
    const mail = await simpleParser(await composeMessage(j));
    expect(mail.subject).toBe("Your receipt | Acme");
    expect(String(mail.html)).toBe("<h1>Hello Ben</h1><div><p>Paid -name-</p></div><footer>Bye Ben</footer>");
    expect(mail.text).toBe("Hello Ben\nPaid -name-\nBye Ben");
  });

  it("fails a message whose data the template cannot render, as a value with the reason", async () => {
    const bad = snapshotOf({
      generation: "dynamic",
      subject: "Hi",
      html: '<p>{{formatDate when "YYYY"}}</p>',
      text: "",
      preheader: null,
    });
    const j: ComposableJob = {
      ...job({}, { ...dynamicTemplate({ when: "next Tuesday" }), snapshot: bad.ref }),
      templateSnapshot: bad.bytes,
    };
    await expect(composeMessage(j)).rejects.toBeInstanceOf(TemplateRenderError);
    const pool = createComposePool({ threads: 0 });
    try {
      const result = await pool.compose(j);
      expect(result.ok).toBe(false);
      expect(!result.ok && result.error).toMatch(
        /^Could not render template d-0123456789abcdef0123456789abcdef \(version v1\): .*formatDate.*\(in the HTML, line 1, column 4\)$/,
      );
      // The same template with a date renders: the failure was this personalization's data.
      const template = { ...j.message.template!, data: { when: "2026-01-02T00:00:00Z" } };
      const ok = await pool.compose({ ...j, message: { ...j.message, template } });
      expect(ok.ok && String((await simpleParser(ok.raw)).html).trim()).toBe("<p>2026</p>");
    } finally {
      await pool.close();
    }
  });

  it("renders in a compose worker thread, and a render failure there is a value too", async () => {
    const pool = createComposePool({ threads: 1 });
    try {
      const good = await pool.compose({ ...job({}, dynamicTemplate(DATA)), templateSnapshot: dynamic.bytes });
      expect(good.ok).toBe(true);
      const mail = await simpleParser(good.ok ? good.raw : Buffer.alloc(0));
      expect(mail.subject).toBe(`Order A-17 for Ann <"O'Neil"> & co`);
      // Not what the edge writes (the blob step verified the bytes against this hash).
      const junk = Buffer.from("{not json");
      const junkSha = createHash("sha256").update(junk).digest("hex");
      const junkRef = { key: `templates/${TENANT}/${junkSha}`, size: junk.length, sha256: junkSha };
      const bad = await pool.compose({
        ...job({}, { ...dynamicTemplate(DATA), snapshot: junkRef }),
        templateSnapshot: junk,
      });
      expect(bad).toEqual({
        ok: false,
        error:
          "Could not render template d-0123456789abcdef0123456789abcdef (version v1): the stored template is not JSON",
      });
      expect(pool.stats().crashes).toBe(0);
    } finally {
      await pool.close();
    }
  });
});

describe("the blob step fetches the snapshot", () => {
  const TOKEN = "origin-token-template-test";
  const store = new Map<string, Buffer>([[dynamic.ref.key, dynamic.bytes]]);
  const requests: string[] = [];
  let server: http.Server;
  let base = "";
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      requests.push(req.url ?? "");
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
      const bytes = store.get(decodeURIComponent((req.url ?? "").slice("/origin/".length)));
      if (!bytes) return void res.writeHead(404).end();
      res.writeHead(200, { "content-length": String(bytes.length) }).end(bytes);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  function setup() {
    const seen: ComposableJob[] = [];
    const fetcher = createBlobFetcher({
      edgeUrl: base,
      token: TOKEN,
      maxCacheBytes: 1 << 20,
      timeoutMs: 5_000,
    });
    const deliver = withBlobs(fetcher, async (j: DeliveryJob, _opts: { deadlineAt?: number }) => {
      seen.push(j);
      return j.recipients.map((recipient): RecipientOutcome => ({
        recipient,
        status: "delivered",
        response: "250",
      }));
    });
    return { seen, deliver, fetcher };
  }

  it("hands the verified snapshot to the compose step, fetched once for a request's jobs", async () => {
    const { seen, deliver, fetcher } = setup();
    requests.length = 0;
    for (let i = 0; i < 3; i++) await deliver(job({}, dynamicTemplate(DATA)), {});
    expect(requests).toEqual([`/origin/${dynamic.ref.key}`]);
    expect(fetcher.stats().hits).toBe(2);
    expect(seen).toHaveLength(3);
    expect(Buffer.from(seen[0]!.templateSnapshot!).equals(dynamic.bytes)).toBe(true);
    const mail = await simpleParser(await composeMessage(seen[2]!));
    expect(mail.subject).toBe(`Order A-17 for Ann <"O'Neil"> & co`);
  });

  it("fails a job whose snapshot is gone (404) or belongs to another tenant", async () => {
    const { seen, deliver } = setup();
    const gone = snapshotOf({ generation: "dynamic", subject: "gone", html: "", text: "", preheader: null });
    const [missing] = await deliver(job({}, { ...dynamicTemplate({}), snapshot: gone.ref }), {});
    expect(missing).toMatchObject({
      status: "failed",
      response: expect.stringMatching(/no longer stored.*404/),
    });
    const foreign = snapshotOf(
      { generation: "dynamic", subject: "x", html: "", text: "", preheader: null },
      "tnt_OTHER",
    );
    const [other] = await deliver(job({}, { ...dynamicTemplate({}), snapshot: foreign.ref }), {});
    expect(other).toMatchObject({
      status: "failed",
      response: `the job names a blob outside its tenant: ${foreign.ref.key}`,
    });
    expect(seen).toHaveLength(0);
  });
});
