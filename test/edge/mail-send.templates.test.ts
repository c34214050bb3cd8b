/**
 * Sending with a stored template at the edge (docs/templates.md#where-rendering-happens): the send
 * checks the tenant's template exists and has an active version (SendGrid's 400 otherwise, in both
 * modes), and each job names the version's content snapshot in R2 by reference with its own
 * personalization's data; the snapshot is written when the version is saved, or once at the first
 * live send of a version saved before snapshots existed; sandbox stores nothing; the origin route
 * serves snapshots; and the cron's retention rule for them.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { serializeSnapshot } from "../../shared/templates/snapshot.ts";
import { createApp } from "../../edge/src/app.ts";
import { createDb } from "../../edge/src/db/client.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { countingD1, countingNamespace, newRoundTrips } from "../bench/lib/counting-bindings.ts";
import { sweepTemplateSnapshots } from "../../edge/src/services/template-snapshots.ts";
import {
  BASE,
  bearer,
  call,
  createApiKey,
  mailBody,
  openLink,
  resetHub,
  sendMail,
  setupTenant,
  type LinkClient,
  type TenantFixture,
} from "./helpers.ts";
import { ALL_TEMPLATE_SCOPES, api, makeTemplate, makeVersion } from "./templates.helpers.ts";

const HELP = "https://scaisend.scailabs.ai/docs/06-reference/02-mail-send";

let t: TenantFixture;
let templatesKey: string;
beforeAll(async () => {
  t = await setupTenant();
  templatesKey = (await createApiKey(t.tenantId, { environment: "live", scopes: ALL_TEMPLATE_SCOPES })).key;
});

const links: LinkClient[] = [];
beforeEach(async () => {
  await resetHub();
});
afterEach(async () => {
  for (const l of links.splice(0)) l.send({ type: "ping" });
  await resetHub();
});

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function jobsOverLink(count: number): Promise<DeliveryJob[]> {
  const link = await openLink();
  links.push(link);
  await link.hello(100);
  return link.jobs(count, 5000);
}

async function snapshotKeys(tenantId: string): Promise<string[]> {
  const listed = await env.BLOBS.list({ prefix: `templates/${tenantId}/` });
  return listed.objects.map((o) => o.key).sort();
}

const rowSha = async (versionId: string) =>
  (
    await env.DB.prepare("SELECT snapshot_sha256 AS sha FROM template_versions WHERE id = ?")
      .bind(versionId)
      .first<{ sha: string | null }>()
  )?.sha;

const unknownTemplate = (id: string) => ({
  errors: [
    {
      message: `The Template ID must be a valid template id for your account. You provided ${id}.`,
      field: "template_id",
      help: `${HELP}#template-id`,
    },
  ],
});

async function expectBody(res: Response, status: number, body: unknown): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(JSON.parse(text)).toEqual(body);
}

const templateSend = (templateId: string, extra: Record<string, unknown> = {}) =>
  mailBody(t.from, { content: undefined, subject: undefined, template_id: templateId, ...extra });

describe("post /v3/mail/send with template_id: what the edge refuses", () => {
  it("an id this tenant has no template for, another tenant's, and a template without an active version: SendGrid's 400, live and sandbox", async () => {
    const unknown = "d-0123456789abcdef0123456789abcdef";
    const other = await setupTenant();
    const otherKey = (
      await createApiKey(other.tenantId, { environment: "live", scopes: ALL_TEMPLATE_SCOPES })
    ).key;
    const theirs = await makeTemplate(otherKey, "theirs");
    await makeVersion(otherKey, theirs.id, { name: "v1" });
    const inactive = await makeTemplate(templatesKey, `inactive-${crypto.randomUUID()}`);
    await makeVersion(templatesKey, inactive.id, { name: "v1", active: 0 });

    for (const id of [unknown, theirs.id, inactive.id]) {
      for (const key of [t.liveKey, t.testKey]) {
        await expectBody(await sendMail(key, templateSend(id)), 400, unknownTemplate(id));
      }
    }
    // A legacy id (a UUID) is looked up the same way.
    const legacyId = crypto.randomUUID();
    await expectBody(await sendMail(t.liveKey, templateSend(legacyId)), 400, unknownTemplate(legacyId));
    // The other tenant's own send works: the refusal above was about tenancy.
    const res = await sendMail(
      other.liveKey,
      mailBody(other.from, { content: undefined, template_id: theirs.id }),
    );
    expect(res.status, await res.text()).toBe(202);
  });

  it("a deleted template makes new sends 400", async () => {
    const tpl = await makeTemplate(templatesKey, `deleted-${crypto.randomUUID()}`);
    await makeVersion(templatesKey, tpl.id, { name: "v1" });
    expect((await sendMail(t.liveKey, templateSend(tpl.id))).status).toBe(202);
    expect((await api(templatesKey, "DELETE", `/v3/templates/${tpl.id}`)).status).toBe(204);
    await expectBody(await sendMail(t.liveKey, templateSend(tpl.id)), 400, unknownTemplate(tpl.id));
  });

  it("substitutions or sections with a dynamic template, and dynamic_template_data without one", async () => {
    const tpl = await makeTemplate(templatesKey, `rules-${crypto.randomUUID()}`);
    await makeVersion(templatesKey, tpl.id, { name: "v1" });
    await expectBody(
      await sendMail(
        t.liveKey,
        templateSend(tpl.id, {
          personalizations: [{ to: [{ email: "a@example.net" }], substitutions: { "-x-": "y" } }],
          sections: { "%s%": "z" },
        }),
      ),
      400,
      {
        errors: [
          {
            message: "Substitutions may not be used with dynamic templating",
            field: "personalizations.0.substitutions",
            help: `${HELP}#personalizations.substitutions`,
          },
          {
            message: "Sections may not be used with dynamic templating",
            field: "sections",
            help: `${HELP}#sections`,
          },
        ],
      },
    );
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        personalizations: [{ to: [{ email: "a@example.net" }], dynamic_template_data: { a: 1 } }],
      }),
    );
    const body = (await res.json()) as { errors: { message: string; field: string }[] };
    expect(res.status).toBe(400);
    expect(body.errors).toEqual([
      {
        message:
          "Dynamic template data is used only with a dynamic template (a template_id starting with d-); remove dynamic_template_data or send with a dynamic template.",
        field: "personalizations.0.dynamic_template_data",
        help: `${HELP}#personalizations.dynamic-template-data`,
      },
    ]);
  });
});

describe("post /v3/mail/send with template_id: what the jobs carry", () => {
  it("saving a version stores its snapshot once; each job names it by reference with its own data, no copy", async () => {
    const tpl = await makeTemplate(templatesKey, `welcome-${crypto.randomUUID()}`);
    const version = await makeVersion(templatesKey, tpl.id, {
      name: "v1",
      subject: "Welcome {{name}}",
      html_content: "<p>Hi {{name}}</p>",
      plain_content: "Hi {{name}}",
      generate_plain_content: false,
    });
    const expected = serializeSnapshot({
      generation: "dynamic",
      subject: "Welcome {{name}}",
      html: "<p>Hi {{name}}</p>",
      text: "Hi {{name}}",
      preheader: null,
    });
    const sha = await sha256(expected);
    const key = `templates/${t.tenantId}/${sha}`;
    expect(await snapshotKeys(t.tenantId)).toContain(key);
    expect(new Uint8Array(await (await env.BLOBS.get(key))!.arrayBuffer())).toEqual(expected);
    expect(await rowSha(version.id)).toBe(sha);
    const uploaded = (await env.BLOBS.head(key))!.uploaded.getTime();

    const res = await sendMail(
      t.liveKey,
      templateSend(tpl.id, {
        personalizations: [
          { to: [{ email: "ann@example.net" }], dynamic_template_data: { name: "Ann" } },
          { to: [{ email: "ben@example.net" }], dynamic_template_data: { name: "Ben" } },
        ],
      }),
    );
    expect(res.status, await res.text()).toBe(202);
    const jobs = (await jobsOverLink(2)).sort((a, b) => a.recipients[0]!.localeCompare(b.recipients[0]!));
    expect(jobs.map((j) => j.message.template)).toEqual(
      ["Ann", "Ben"].map((name) => ({
        templateId: tpl.id,
        versionId: version.id,
        generation: "dynamic",
        snapshot: { key, size: expected.byteLength, sha256: sha },
        data: { name },
      })),
    );
    for (const j of jobs) {
      expect(j.message.html).toBeUndefined();
      expect(j.message.text).toBeUndefined();
      expect(j.message.subject).toBe("");
    }
    // The send wrote nothing: the snapshot was there already, untouched.
    expect((await env.BLOBS.head(key))!.uploaded.getTime()).toBe(uploaded);

    // The same content again (a duplicated template, a second version) is the same object.
    const keysBefore = await snapshotKeys(t.tenantId);
    const dup = await api(templatesKey, "POST", `/v3/templates/${tpl.id}`, {
      name: `dup-${crypto.randomUUID()}`,
    });
    expect(dup.status, dup.text).toBe(201);
    expect(await rowSha(dup.body.versions[0].id)).toBe(sha);
    const second = await makeVersion(templatesKey, tpl.id, {
      name: "v2",
      subject: "Welcome {{name}}",
      html_content: "<p>Hi {{name}}</p>",
      plain_content: "Hi {{name}}",
      generate_plain_content: false,
      active: 0,
    });
    expect(await rowSha(second.id)).toBe(sha);
    expect(await snapshotKeys(t.tenantId)).toEqual(keysBefore);

    // Editing the content stores a new snapshot and names it on the row; the old one stays.
    const edited = await api(templatesKey, "PATCH", `/v3/templates/${tpl.id}/versions/${version.id}`, {
      html_content: "<p>Hello {{name}}</p>",
    });
    expect(edited.status, edited.text).toBe(200);
    const newSha = await rowSha(version.id);
    expect(newSha).not.toBe(sha);
    expect(await snapshotKeys(t.tenantId)).toEqual(
      expect.arrayContaining([key, `templates/${t.tenantId}/${newSha}`]),
    );
  });

  it("a version saved before snapshots existed gets its snapshot at its first live send, once; sandbox stores nothing", async () => {
    const fresh = await setupTenant();
    const tKey = (await createApiKey(fresh.tenantId, { environment: "live", scopes: ALL_TEMPLATE_SCOPES }))
      .key;
    const tpl = await makeTemplate(tKey, "old");
    const version = await makeVersion(tKey, tpl.id, { name: "v1", subject: "Old {{x}}" });
    // As a row written before migration 0004: no hash, no object.
    await env.DB.prepare("UPDATE template_versions SET snapshot_sha256 = NULL WHERE id = ?")
      .bind(version.id)
      .run();
    for (const k of await snapshotKeys(fresh.tenantId)) await env.BLOBS.delete(k);
    // Never looked up before, so no isolate holds it cached with a hash.
    const body = mailBody(fresh.from, { content: undefined, subject: undefined, template_id: tpl.id });

    const sandbox = await sendMail(fresh.testKey, body);
    expect(sandbox.status, await sandbox.text()).toBe(202);
    expect(await snapshotKeys(fresh.tenantId)).toEqual([]);
    expect(await rowSha(version.id)).toBeNull();

    const first = await sendMail(fresh.liveKey, body);
    expect(first.status, await first.text()).toBe(202);
    const keys = await snapshotKeys(fresh.tenantId);
    expect(keys).toHaveLength(1);
    const sha = keys[0]!.split("/")[2]!;
    expect(await rowSha(version.id)).toBe(sha);
    const uploaded = (await env.BLOBS.head(keys[0]!))!.uploaded.getTime();
    await new Promise((r) => setTimeout(r, 20));
    const second = await sendMail(fresh.liveKey, body);
    expect(second.status).toBe(202);
    expect((await env.BLOBS.head(keys[0]!))!.uploaded.getTime()).toBe(uploaded);
    const jobs = await jobsOverLink(2);
    for (const j of jobs) expect(j.message.template?.snapshot.key).toBe(keys[0]);
  });

  it("a legacy template takes the request's content and subject; substitutions and sections travel for the template's text", async () => {
    const tpl = await makeTemplate(templatesKey, `legacy-${crypto.randomUUID()}`, "legacy");
    const version = await makeVersion(templatesKey, tpl.id, {
      name: "v1",
      subject: "<%subject%> | -brand-",
      html_content: "<h1>-name-</h1><%body%>",
      plain_content: "-name-\n<%body%>",
      generate_plain_content: false,
    });
    const res = await sendMail(
      t.liveKey,
      mailBody(t.from, {
        template_id: tpl.id,
        subject: "Receipt for -name-",
        personalizations: [
          { to: [{ email: "leg@example.net" }], substitutions: { "-name-": "Cy", "-brand-": "Acme" } },
        ],
        content: [
          { type: "text/plain", value: "Paid, -name-" },
          { type: "text/html", value: "<p>Paid, -name-</p>" },
        ],
        sections: { "%s%": "section" },
      }),
    );
    expect(res.status, await res.text()).toBe(202);
    const [job] = await jobsOverLink(1);
    expect(job!.message).toMatchObject({
      subject: "Receipt for Cy",
      text: "Paid, Cy",
      html: "<p>Paid, Cy</p>",
    });
    expect(job!.message.template).toMatchObject({
      templateId: tpl.id,
      versionId: version.id,
      generation: "legacy",
      substitutions: { "-name-": "Cy", "-brand-": "Acme" },
      sections: { "%s%": "section" },
    });
  });
});

describe("round trips of a template send", () => {
  it.each([
    ["a small template", 100],
    ["a template too large for the cache to keep its content (over 64 KiB)", 80_000],
  ])("a warm isolate adds none for %s: one hub call per send, no D1 read, no R2 write", async (_, size) => {
    const tpl = await makeTemplate(templatesKey, `warm-${crypto.randomUUID()}`);
    await makeVersion(templatesKey, tpl.id, {
      name: "v1",
      html_content: `<p>Hi {{name}}</p><p>${"x".repeat(size)}</p>`,
    });
    const trips = newRoundTrips();
    let puts = 0;
    const blobs = new Proxy(env.BLOBS, {
      get(target, prop) {
        if (prop === "put") return (...args: Parameters<R2Bucket["put"]>) => (puts++, target.put(...args));
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const bindings = {
      ...(env as unknown as Bindings),
      DB: countingD1(env.DB, trips),
      BLOBS: blobs,
      RATE_LIMITER: countingNamespace(env.RATE_LIMITER, "RATE_LIMITER", trips),
      ORIGIN_HUB: countingNamespace(env.ORIGIN_HUB, "ORIGIN_HUB", trips),
    } as Bindings;
    const app = createApp();
    const send = async () => {
      const ctx = createExecutionContext();
      const body = templateSend(tpl.id, {
        personalizations: [{ to: [{ email: "warm@example.net" }], dynamic_template_data: { name: "W" } }],
      });
      const res = await app.request(
        `${BASE}/v3/mail/send`,
        { method: "POST", headers: bearer(t.liveKey), body: JSON.stringify(body) },
        bindings,
        ctx,
      );
      expect(res.status, await res.clone().text()).toBe(202);
      await waitOnExecutionContext(ctx);
    };
    await send();
    const before = { d1: trips.d1, hub: trips.durableObjects["ORIGIN_HUB"] ?? 0 };
    const N = 10;
    for (let i = 0; i < N; i++) await send();
    expect((trips.durableObjects["ORIGIN_HUB"] ?? 0) - before.hub).toBe(N);
    expect(trips.d1 - before.d1).toBe(0);
    expect(puts).toBe(0);
  });
});

describe("template snapshots for the origin, and their retention", () => {
  it("GET /origin/templates/<key> serves a snapshot with the origin token; other keys are 404", async () => {
    const tpl = await makeTemplate(templatesKey, `route-${crypto.randomUUID()}`);
    const version = await makeVersion(templatesKey, tpl.id, { name: "v1" });
    const key = `templates/${t.tenantId}/${await rowSha(version.id)}`;
    const ok = await call(`/origin/${key}`, { headers: bearer(env.ORIGIN_TOKEN) });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe(await (await env.BLOBS.get(key))!.text());
    expect((await call(`/origin/${key}`, { headers: bearer("wrong") })).status).toBe(401);
    expect(
      (await call(`/origin/templates/${t.tenantId}/nothex`, { headers: bearer(env.ORIGIN_TOKEN) })).status,
    ).toBe(404);
    expect(
      (await call(`/origin/templates/${t.tenantId}/${"0".repeat(64)}`, { headers: bearer(env.ORIGIN_TOKEN) }))
        .status,
    ).toBe(404);
  });

  it("kept while a version names it; once none does, marked, then deleted after the retention", async () => {
    const fresh = await setupTenant();
    const tKey = (await createApiKey(fresh.tenantId, { environment: "live", scopes: ALL_TEMPLATE_SCOPES }))
      .key;
    const tpl = await makeTemplate(tKey, "kept");
    const v = await makeVersion(tKey, tpl.id, { name: "v1", html_content: "<p>one</p>" });
    const first = `templates/${fresh.tenantId}/${await rowSha(v.id)}`;
    const patched = await api(tKey, "PATCH", `/v3/templates/${tpl.id}/versions/${v.id}`, {
      html_content: "<p>two</p>",
    });
    expect(patched.status).toBe(200);
    const second = `templates/${fresh.tenantId}/${await rowSha(v.id)}`;
    const db = createDb(env.DB);
    const RETENTION = 3_600_000;
    const mark = (k: string) => k.replace(/^templates\//, "template-gc/");

    await sweepTemplateSnapshots(env.BLOBS, db, Date.now(), RETENTION);
    expect(await env.BLOBS.head(first)).not.toBeNull(); // unreferenced now: marked, not deleted
    expect(await env.BLOBS.head(mark(first))).not.toBeNull();
    expect(await env.BLOBS.head(mark(second))).toBeNull(); // referenced: never marked
    await sweepTemplateSnapshots(env.BLOBS, db, Date.now() + RETENTION - 60_000, RETENTION);
    expect(await env.BLOBS.head(first)).not.toBeNull(); // not yet
    await sweepTemplateSnapshots(env.BLOBS, db, Date.now() + RETENTION + 60_000, RETENTION);
    expect(await env.BLOBS.head(first)).toBeNull();
    expect(await env.BLOBS.head(mark(first))).toBeNull();
    expect(await env.BLOBS.head(second)).not.toBeNull();

    // The template deleted: its snapshot is marked; saved again with the same content before the
    // retention ran out, it is named again and loses its mark.
    expect((await api(tKey, "DELETE", `/v3/templates/${tpl.id}`)).status).toBe(204);
    await sweepTemplateSnapshots(env.BLOBS, db, Date.now(), RETENTION);
    expect(await env.BLOBS.head(mark(second))).not.toBeNull();
    const again = await makeTemplate(tKey, "kept-again");
    const v2 = await makeVersion(tKey, again.id, { name: "v1", html_content: "<p>two</p>" });
    expect(`templates/${fresh.tenantId}/${await rowSha(v2.id)}`).toBe(second);
    await sweepTemplateSnapshots(env.BLOBS, db, Date.now() + 2 * RETENTION, RETENTION);
    expect(await env.BLOBS.head(second)).not.toBeNull();
    expect(await env.BLOBS.head(mark(second))).toBeNull();
  });
});
