/**
 * activeTemplateVersion (edge/src/services/templates-cache.ts): the answer the send path will ask
 * for, cached in isolate memory for AUTH_CACHE_TTL_MS. A change made elsewhere (written to D1
 * directly, as another isolate would) is seen once the TTL has passed; a change made through this
 * isolate's routes is seen at once; refusals are re-read within a second; large versions are not
 * held in memory. The app runs through `app.request` in this isolate with a D1 binding wrapped to
 * count its calls, and the caches' clocks are stepped instead of waiting.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../edge/src/app.ts";
import { createDb } from "../../edge/src/db/client.ts";
import type { Bindings } from "../../edge/src/env.ts";
import { catalogCache, REFUSAL_RECHECK_MS } from "../../edge/src/services/catalog-cache.ts";
import {
  activeTemplateVersion,
  MAX_CACHED_CONTENT_BYTES,
  templateCache,
} from "../../edge/src/services/templates-cache.ts";
import { countingD1, newRoundTrips, type RoundTrips } from "../bench/lib/counting-bindings.ts";
import { BASE, bearer } from "./helpers.ts";
import { templatesTenant, type TemplatesTenant } from "./templates.helpers.ts";

const TTL = 10_000;
const app = createApp();
let now = 0;
let trips: RoundTrips;
let bindings: Bindings;

beforeEach(() => {
  now = Date.now();
  catalogCache.clock = () => now;
  templateCache.clock = () => now;
  catalogCache.clear();
  templateCache.clear();
  catalogCache.ttlMs = TTL;
  trips = newRoundTrips();
  bindings = {
    ...(env as unknown as Bindings),
    AUTH_CACHE_TTL_MS: String(TTL),
    DB: countingD1(env.DB, trips),
  } as Bindings;
});

afterEach(() => {
  catalogCache.clock = Date.now;
  templateCache.clock = Date.now;
  catalogCache.clear();
  templateCache.clear();
  catalogCache.ttlMs = TTL;
});

async function request(t: TemplatesTenant, method: string, path: string, body?: unknown) {
  const ctx = createExecutionContext();
  const res = await app.request(
    `${BASE}${path}`,
    { method, headers: bearer(t.key), ...(body === undefined ? {} : { body: JSON.stringify(body) }) },
    bindings,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text === "" ? undefined : (JSON.parse(text) as Record<string, unknown> & { id: string });
}

const active = (tenantId: string, templateId: string) =>
  activeTemplateVersion(createDb(bindings.DB), tenantId, templateId);
const templateReads = () => trips.log.filter((sql) => /from "template_versions"/i.test(sql)).length;

async function templateWithTwoVersions(t: TemplatesTenant) {
  const tpl = await request(t, "POST", "/v3/templates", { name: "Welcome", generation: "dynamic" });
  const v1 = await request(t, "POST", `/v3/templates/${tpl!.id}/versions`, {
    name: "one",
    subject: "Hi {{name}}",
    html_content: "<p>One {{name}}</p>",
  });
  const v2 = await request(t, "POST", `/v3/templates/${tpl!.id}/versions`, {
    name: "two",
    subject: "Hello {{name}}",
    html_content: "<p>Two {{name}}</p>",
    preheader: "Pre {{name}}",
  });
  return { tpl: tpl!, v1: v1!, v2: v2! };
}

describe("activeTemplateVersion", () => {
  it("answers the active version's parts, and null for no template, another tenant's, or none active", async () => {
    const t = await templatesTenant();
    const other = await templatesTenant();
    const { tpl, v1 } = await templateWithTwoVersions(t);
    expect(await active(t.tenantId, tpl.id)).toEqual({
      templateId: tpl.id,
      generation: "dynamic",
      versionId: v1.id,
      versionName: "one",
      subject: "Hi {{name}}",
      htmlContent: "<p>One {{name}}</p>",
      plainContent: "One {{name}}",
      preheader: null,
      updatedAt: expect.any(Number),
      snapshotSha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(await active(other.tenantId, tpl.id)).toBeNull();
    expect(await active(t.tenantId, `d-${"a".repeat(32)}`)).toBeNull();
    await request(t, "PATCH", `/v3/templates/${tpl.id}/versions/${v1.id}`, { active: 0 });
    expect(await active(t.tenantId, tpl.id)).toBeNull();
  });

  it("a warm answer costs no D1 read; a change through this isolate is seen at once", async () => {
    const t = await templatesTenant();
    const { tpl, v2 } = await templateWithTwoVersions(t);
    await active(t.tenantId, tpl.id);
    const before = templateReads();
    expect((await active(t.tenantId, tpl.id))?.versionName).toBe("one");
    expect(templateReads()).toBe(before);

    await request(t, "POST", `/v3/templates/${tpl.id}/versions/${v2.id}/activate`);
    const now2 = await active(t.tenantId, tpl.id);
    expect(now2?.versionId).toBe(v2.id);
    expect(now2?.preheader).toBe("Pre {{name}}");
    // Read on the primary after this isolate's change (a replica may not have it yet).
    expect(trips.d1Sessions["first-primary"]).toBeGreaterThan(0);

    await request(t, "PATCH", `/v3/templates/${tpl.id}/versions/${v2.id}`, { subject: "Changed" });
    expect((await active(t.tenantId, tpl.id))?.subject).toBe("Changed");

    await request(t, "DELETE", `/v3/templates/${tpl.id}`);
    expect(await active(t.tenantId, tpl.id)).toBeNull();
  });

  it("a change made elsewhere is served stale until the TTL has passed, then seen", async () => {
    const t = await templatesTenant();
    const { tpl, v1, v2 } = await templateWithTwoVersions(t);
    expect((await active(t.tenantId, tpl.id))?.versionId).toBe(v1.id);
    // Another isolate activates v2 (both rows in one batch, as the routes do).
    await env.DB.batch([
      env.DB.prepare("UPDATE template_versions SET active = 0 WHERE id = ?").bind(v1.id),
      env.DB.prepare("UPDATE template_versions SET active = 1 WHERE id = ?").bind(v2.id),
    ]);
    now += TTL - 1;
    expect((await active(t.tenantId, tpl.id))?.versionId).toBe(v1.id);
    now += 1;
    expect((await active(t.tenantId, tpl.id))?.versionId).toBe(v2.id);
  });

  it("a refusal is re-read within a second: a template activated elsewhere is found", async () => {
    const t = await templatesTenant();
    const tpl = await request(t, "POST", "/v3/templates", { name: "Later", generation: "dynamic" });
    const v = await request(t, "POST", `/v3/templates/${tpl!.id}/versions`, {
      name: "v",
      subject: "s",
      active: 0,
    });
    expect(await active(t.tenantId, tpl!.id)).toBeNull();
    const reads = templateReads();
    expect(await active(t.tenantId, tpl!.id)).toBeNull(); // cached refusal
    expect(templateReads()).toBe(reads);
    await env.DB.prepare("UPDATE template_versions SET active = 1 WHERE id = ?").bind(v!.id).run();
    now += REFUSAL_RECHECK_MS - 1;
    expect(await active(t.tenantId, tpl!.id)).toBeNull();
    now += 1;
    expect((await active(t.tenantId, tpl!.id))?.versionId).toBe(v!.id);
  });

  it("a version larger than MAX_CACHED_CONTENT_BYTES is answered in full but its content is read each time", async () => {
    const t = await templatesTenant();
    const tpl = await request(t, "POST", "/v3/templates", { name: "Large", generation: "dynamic" });
    const html = `<p>${"x".repeat(MAX_CACHED_CONTENT_BYTES)}</p>`;
    const v = await request(t, "POST", `/v3/templates/${tpl!.id}/versions`, {
      name: "v",
      subject: "s",
      html_content: html,
      generate_plain_content: false,
      plain_content: "small",
    });
    expect((await active(t.tenantId, tpl!.id))?.htmlContent).toBe(html);
    const reads = templateReads();
    expect((await active(t.tenantId, tpl!.id))?.htmlContent).toBe(html);
    expect(templateReads()).toBe(reads + 1); // the content, by version id
    // A content change elsewhere is therefore seen at once for such a version.
    await env.DB.prepare("UPDATE template_versions SET plain_content = 'edited' WHERE id = ?")
      .bind(v!.id)
      .run();
    expect((await active(t.tenantId, tpl!.id))?.plainContent).toBe("edited");
  });

  it("AUTH_CACHE_TTL_MS = 0 turns the cache off", async () => {
    const t = await templatesTenant();
    const { tpl, v1, v2 } = await templateWithTwoVersions(t);
    catalogCache.ttlMs = 0;
    expect((await active(t.tenantId, tpl.id))?.versionId).toBe(v1.id);
    await env.DB.batch([
      env.DB.prepare("UPDATE template_versions SET active = 0 WHERE id = ?").bind(v1.id),
      env.DB.prepare("UPDATE template_versions SET active = 1 WHERE id = ?").bind(v2.id),
    ]);
    expect((await active(t.tenantId, tpl.id))?.versionId).toBe(v2.id);
  });
});
