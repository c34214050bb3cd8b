/**
 * The template branch of SenderKit's `POST /v1/send` (docs/api/senderkit.md#templates): which
 * version of which template a send uses, and that version rendered with the send's `vars`.
 *
 * Resolution (SenderKit's versioning rules):
 *  - the slug is looked up lowercased, in the sending tenant only (another tenant's slug is
 *    `404 template_not_found`, as for a slug that exists nowhere);
 *  - an archived template is `422 template_archived`, whatever the mode or pin;
 *  - `version: N` uses exactly N in either mode (no such version: `404 template_not_found`);
 *  - live with no pin: the published version (none: `404 template_not_published`);
 *  - test with no pin: the latest (highest-numbered) version, even an unpublished draft;
 *  - a `channel` on the send that is not the template's: `400 channel_mismatch`.
 *
 * Rendering happens here, at the edge, with the shared renderer (shared/render, the one /v3
 * templates and the origin use) in SenderKit's Mustache mode: `output` is exactly what
 * `POST /v1/templates/{slug}/render` answers for the same version and vars, and has the shape of a
 * raw send's `content` for the channel, so the rest of the send path treats it as a raw send.
 */
import type { Db } from "../../db/client.ts";
import { resolveSkTemplate, type SkChannel, type SkMode } from "./template-render.ts";
import type { SkRenderedOutput } from "./template-render.ts";

export type { SkChannel, SkMode, SkRenderedOutput } from "./template-render.ts";

export interface TemplateSendInput {
  tenantId: string;
  mode: SkMode;
  /** The send's `template` (any case; looked up lowercased). */
  slug: string;
  /** The send's `version` pin, when given. */
  version?: number;
  /** The send's `channel`, when given: must equal the template's. */
  channel?: SkChannel;
  /** The send's `vars` ({} when absent). */
  vars: Record<string, unknown>;
}

export interface ResolvedTemplateSend {
  ok: true;
  template: {
    id: string;
    /** The stored (lowercase) slug: the message's `templateSlug`. */
    slug: string;
    channel: SkChannel;
  };
  version: {
    id: string;
    number: number;
  };
  /** The message's `pinnedVersion`: the caller's pin, or null when chosen by the mode. */
  pinnedVersion: number | null;
  /** Rendered fields for the channel (email: subject, preheader, html, text; sms: body; …). */
  output: SkRenderedOutput;
  /** Variable paths the version read that `vars` did not have (they rendered as ""). */
  missing: string[];
}

export type TemplateSendErrorCode =
  | "template_not_found"
  | "template_not_published"
  | "template_archived"
  | "channel_mismatch"
  | "invalid_request";

export interface TemplateSendError {
  ok: false;
  status: 400 | 404 | 422;
  code: TemplateSendErrorCode;
  message: string;
}

/**
 * Resolve and render the template of a `/v1/send`. Never throws for bad input (every refusal is a
 * `TemplateSendError` in SenderKit's codes, ready for `{"error":{code,message}}`); a D1 failure
 * still throws.
 */
export async function resolveTemplateSend(
  db: Db,
  input: TemplateSendInput,
): Promise<ResolvedTemplateSend | TemplateSendError> {
  const r = await resolveSkTemplate(db, {
    tenantId: input.tenantId,
    mode: input.mode,
    slug: input.slug,
    ...(input.version !== undefined ? { version: input.version } : {}),
    vars: input.vars,
    purpose: "send",
  });
  if (!r.ok) return r;
  if (input.channel !== undefined && input.channel !== r.template.channel) {
    return {
      ok: false,
      status: 400,
      code: "channel_mismatch",
      message: `template "${r.template.slug}" is a ${r.template.channel} template; the send's channel is ${input.channel}`,
    };
  }
  return {
    ok: true,
    template: r.template,
    version: r.version,
    pinnedVersion: input.version ?? null,
    output: r.output,
    missing: r.missing,
  };
}
