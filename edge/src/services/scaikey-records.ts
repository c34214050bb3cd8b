/**
 * ScaiKey's records as ScaiSend reads them (docs/scaikey.md#records): the one contract shared by the
 * sync webhook (surfaces/scaikey-webhook.ts), the bulk sync endpoint and the `scaisend sync --full`
 * CLI (scripts/lib/scaikey-sync.ts). Only the fields named here are read; any other field a record
 * carries is ignored (ScaiKey may add fields without breaking ScaiSend). `updated_at` is required:
 * it is what keeps an older record from overwriting a newer one.
 */
import { z } from "zod";

const id = z.string().trim().min(1).max(100);
const name = z.string().trim().min(1).max(255);
const optionalText = z.string().max(255).nullable().optional();
/** RFC 3339 with an offset (`2026-12-03T06:00:00Z`), read as unix ms. */
const timestamp = z.iso.datetime({ offset: true }).transform((v) => Date.parse(v));

export const PartnerRecord = z.object({
  id,
  name,
  slug: z.string().trim().min(1).max(100),
  updated_at: timestamp,
});

export const TenantRecord = z.object({
  id,
  partner_id: id.nullable().optional(),
  name,
  slug: z.string().trim().min(1).max(100).nullable().optional(),
  status: z.enum(["active", "suspended"]),
  updated_at: timestamp,
});

export const UserRecord = z.object({
  id,
  tenant_id: id,
  email: z.email().max(320).nullable().optional(),
  given_name: optionalText,
  family_name: optionalText,
  name: optionalText,
  /** Group ids; absent leaves the mirrored groups as they are. */
  groups: z.array(z.string().trim().min(1).max(255)).max(1000).optional(),
  updated_at: timestamp,
});

export const MembershipRecord = z.object({
  tenant_id: id,
  user_id: id,
  group_id: z.string().trim().min(1).max(255),
});

/** A deleted record: its id (and tenant, for a user) and when it was deleted. */
export const DeletedRecord = z.object({
  id,
  tenant_id: id.optional(),
  updated_at: timestamp,
});

export type PartnerRecord = z.infer<typeof PartnerRecord>;
export type TenantRecord = z.infer<typeof TenantRecord>;
export type UserRecord = z.infer<typeof UserRecord>;
export type MembershipRecord = z.infer<typeof MembershipRecord>;
export type DeletedRecord = z.infer<typeof DeletedRecord>;

export const EVENT_TYPES = [
  "partner.created",
  "partner.updated",
  "partner.deleted",
  "tenant.created",
  "tenant.updated",
  "tenant.deleted",
  "user.created",
  "user.updated",
  "user.deleted",
  "group_membership.created",
  "group_membership.updated",
  "group_membership.deleted",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The webhook's envelope; `data` is checked against the record its type names. */
export const EventEnvelope = z.object({
  id: z.string().trim().min(1).max(200),
  type: z.string().min(1).max(100),
  data: z.record(z.string(), z.unknown()),
});

/** Zod's issues as one readable line: `data.updated_at: Invalid ISO datetime; …`. */
export function describeIssues(error: z.ZodError, prefix = ""): string {
  return error.issues
    .map((i) => `${[prefix, ...i.path.map(String)].filter(Boolean).join(".") || "(body)"}: ${i.message}`)
    .join("; ");
}
