/**
 * A template version's content as one immutable R2 object (docs/templates.md#stored-templates): the
 * edge writes it when a version is saved (edge/src/services/template-snapshots.ts), a delivery job
 * names it by its SHA-256, and the origin renders every message of the version from it. One format
 * for both ends, so what the origin reads is exactly what the edge hashed.
 */
import { z } from "zod";

export const SNAPSHOT_FORMAT = 1;

export const TemplateSnapshotSchema = z.object({
  format: z.literal(SNAPSHOT_FORMAT),
  generation: z.enum(["dynamic", "legacy"]),
  subject: z.string(),
  html: z.string(),
  text: z.string(),
  preheader: z.string().nullable(),
});
export type TemplateSnapshot = z.infer<typeof TemplateSnapshotSchema>;

/** The bytes stored and hashed: JSON with the keys in this fixed order, so equal content hashes equal. */
export function serializeSnapshot(s: Omit<TemplateSnapshot, "format">): Uint8Array<ArrayBuffer> {
  const ordered: TemplateSnapshot = {
    format: SNAPSHOT_FORMAT,
    generation: s.generation,
    subject: s.subject,
    html: s.html,
    text: s.text,
    preheader: s.preheader,
  };
  return new TextEncoder().encode(JSON.stringify(ordered)) as Uint8Array<ArrayBuffer>;
}

export type ParsedSnapshot = { ok: true; snapshot: TemplateSnapshot } | { ok: false; error: string };

export function parseSnapshot(bytes: Uint8Array): ParsedSnapshot {
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    return { ok: false, error: "the stored template is not JSON" };
  }
  const r = TemplateSnapshotSchema.safeParse(data);
  return r.success
    ? { ok: true, snapshot: r.data }
    : { ok: false, error: "the stored template is malformed" };
}
