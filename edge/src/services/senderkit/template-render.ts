/**
 * Which version of a SenderKit template a send or a render uses, rendered with the caller's vars
 * (docs/api/senderkit.md#templates). Shared by `POST /v1/send` (template-send.ts) and
 * `POST /v1/templates/{slug}/render`, so a render previews exactly what a send would deliver.
 */
import type { Db } from "../../db/client.ts";
import { tenantSkTemplates } from "../../db/sk-templates.ts";
import {
  compiledVersion,
  renderContent,
  type SkChannel,
  type SkContent,
  type SkRenderedOutput,
} from "./template-content.ts";

export type { SkChannel, SkRenderedOutput } from "./template-content.ts";
export type SkMode = "live" | "test";

/** Slugs are stored lowercase (SenderKit: "Welcome-Email" is saved as "welcome-email"). */
export const SLUG_PATTERN = /^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$/;
export const normalizeSlug = (slug: string) => slug.trim().toLowerCase();

export interface ResolveInput {
  tenantId: string;
  mode: SkMode;
  slug: string;
  version?: number;
  vars: Record<string, unknown>;
  /**
   * "send": with no pin, live takes the published version and test the latest (SenderKit's
   * environments). "render": with no pin, the published version in either mode (the render
   * endpoint renders "the template's current published version").
   */
  purpose: "send" | "render";
}

export interface Resolved {
  ok: true;
  template: { id: string; slug: string; channel: SkChannel };
  version: { id: string; number: number };
  output: SkRenderedOutput;
  missing: string[];
}

export interface ResolveError {
  ok: false;
  status: 400 | 404 | 422;
  code: "template_not_found" | "template_not_published" | "template_archived" | "invalid_request";
  message: string;
}

export async function resolveSkTemplate(db: Db, input: ResolveInput): Promise<Resolved | ResolveError> {
  const slug = normalizeSlug(input.slug);
  const notFound = (): ResolveError => ({
    ok: false,
    status: 404,
    code: "template_not_found",
    message: `No template "${input.slug}"`,
  });
  if (!SLUG_PATTERN.test(slug)) return notFound();
  const pick =
    input.version !== undefined
      ? { pin: input.version }
      : { mode: input.purpose === "render" ? ("live" as const) : input.mode };
  const found = await tenantSkTemplates(db, input.tenantId).resolveSkVersion(slug, pick);
  if (!found) return notFound();
  const { template: t, version: v } = found;
  if (t.archivedAt !== null) {
    return { ok: false, status: 422, code: "template_archived", message: `Template "${t.slug}" is archived` };
  }
  if (!v) {
    if (input.version !== undefined) {
      return {
        ok: false,
        status: 404,
        code: "template_not_found",
        message: `Template "${t.slug}" has no version ${input.version}`,
      };
    }
    if (t.latestVersion === 0) {
      return {
        ok: false,
        status: 404,
        code: "template_not_published",
        message: `Template "${t.slug}" has no versions yet`,
      };
    }
    return {
      ok: false,
      status: 404,
      code: "template_not_published",
      message: `Template "${t.slug}" has no published version`,
    };
  }
  const compiled = compiledVersion(v.id, t.channel, v.content as SkContent);
  const r = renderContent(compiled, input.vars);
  if (!r.ok) {
    return {
      ok: false,
      status: 400,
      code: "invalid_request",
      message: `Template "${t.slug}" version ${v.versionNumber} could not be rendered with these vars: ${r.message}`,
    };
  }
  return {
    ok: true,
    template: { id: t.id, slug: t.slug, channel: t.channel },
    version: { id: v.id, number: v.versionNumber },
    output: r.output,
    missing: r.missing,
  };
}
