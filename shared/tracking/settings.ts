/**
 * Tracking settings: the tenant defaults (`GET/PUT /api/admin/tenants/{id}/tracking`), the request's
 * `tracking_settings` and `mail_settings.footer` deep-merged over them, and the result as it travels
 * with a job to the origin, which applies it (origin/src/compose/tracking.ts;
 * docs/api/tracking.md#settings).
 */
import { z } from "zod";
import type { MailSend } from "../sendgrid/mail-send.ts";

/** The tenant defaults, in ScaiSend's names (docs/api/tracking.md#tenant-defaults). */
export interface TenantTrackingDefaults {
  open_tracking_enabled: boolean;
  click_tracking_enabled: boolean;
  click_tracking_enable_text: boolean;
  subscription_tracking_enabled: boolean;
  ganalytics_enabled: boolean;
  /** How library images reach recipients (docs/api/images.md#image_embed_mode). */
  image_embed_mode: ImageEmbedMode;
}

export const IMAGE_EMBED_MODES = ["proxy", "cid"] as const;
export type ImageEmbedMode = (typeof IMAGE_EMBED_MODES)[number];

export const DEFAULT_TENANT_TRACKING: TenantTrackingDefaults = {
  open_tracking_enabled: true,
  click_tracking_enabled: true,
  click_tracking_enable_text: false,
  subscription_tracking_enabled: false,
  ganalytics_enabled: false,
  image_embed_mode: "proxy",
};

/** A PUT body: any subset of the defaults (partial and additive); an unknown key is refused. */
export const TenantTrackingPatchSchema = z.strictObject({
  open_tracking_enabled: z.boolean().optional(),
  click_tracking_enabled: z.boolean().optional(),
  click_tracking_enable_text: z.boolean().optional(),
  subscription_tracking_enabled: z.boolean().optional(),
  ganalytics_enabled: z.boolean().optional(),
  image_embed_mode: z.enum(IMAGE_EMBED_MODES).optional(),
});
export type TenantTrackingPatch = z.infer<typeof TenantTrackingPatchSchema>;

/** Stored defaults (possibly partial, from an older row) over DEFAULT_TENANT_TRACKING. */
export function tenantDefaults(
  stored: Partial<TenantTrackingDefaults> | null | undefined,
): TenantTrackingDefaults {
  const out = { ...DEFAULT_TENANT_TRACKING };
  const flags = Object.keys(out).filter((k) => k !== "image_embed_mode") as Exclude<
    keyof TenantTrackingDefaults,
    "image_embed_mode"
  >[];
  for (const k of flags) {
    const v = stored?.[k];
    if (typeof v === "boolean") out[k] = v;
  }
  const mode = stored?.image_embed_mode;
  if (mode !== undefined && (IMAGE_EMBED_MODES as readonly string[]).includes(mode))
    out.image_embed_mode = mode;
  return out;
}

const UTM_KEYS = ["utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign"] as const;
export type UtmKey = (typeof UTM_KEYS)[number];
export { UTM_KEYS };

/**
 * What the origin applies to one message; a feature is on when its key is present. The unsubscribe
 * link (List-Unsubscribe and the footer) is written for every live message; `asm` names the group
 * it unsubscribes from.
 */
export const JobTrackingSchema = z.object({
  open: z.object({ substitutionTag: z.string().max(1000).optional() }).optional(),
  click: z.object({ enableText: z.boolean() }).optional(),
  subscription: z
    .object({
      text: z.string().max(100_000).optional(),
      html: z.string().max(100_000).optional(),
      substitutionTag: z.string().max(1000).optional(),
    })
    .optional(),
  ganalytics: z.partialRecord(z.enum(UTM_KEYS), z.string().max(1000)).optional(),
  footer: z
    .object({ text: z.string().max(100_000).optional(), html: z.string().max(100_000).optional() })
    .optional(),
  asm: z.object({ groupId: z.number().int(), groupsToDisplay: z.array(z.number().int()).max(25) }).optional(),
  /** `image_embed_mode: cid`: library images become inline parts; absent, the `proxy` default. */
  images: z.object({ mode: z.literal("cid") }).optional(),
});
export type JobTracking = z.infer<typeof JobTrackingSchema>;

/**
 * The request's settings deep-merged over the tenant's defaults: a key the request sets wins, one it
 * leaves out keeps the default (`{click_tracking: {enable: false}}` turns off only click tracking).
 */
export function mergeTracking(
  defaults: TenantTrackingDefaults,
  mail: Pick<MailSend, "tracking_settings" | "mail_settings" | "asm">,
): JobTracking {
  const t = mail.tracking_settings ?? {};
  const out: JobTracking = {};
  const open = t.open_tracking?.enable ?? defaults.open_tracking_enabled;
  if (open) {
    const tag = t.open_tracking?.substitution_tag;
    out.open = tag ? { substitutionTag: tag } : {};
  }
  const click = t.click_tracking?.enable ?? defaults.click_tracking_enabled;
  if (click) out.click = { enableText: t.click_tracking?.enable_text ?? defaults.click_tracking_enable_text };
  const sub = t.subscription_tracking?.enable ?? defaults.subscription_tracking_enabled;
  if (sub) {
    const s = t.subscription_tracking ?? {};
    out.subscription = {
      ...(s.text !== undefined ? { text: s.text } : {}),
      ...(s.html !== undefined ? { html: s.html } : {}),
      ...(s.substitution_tag ? { substitutionTag: s.substitution_tag } : {}),
    };
  }
  const ga = t.ganalytics?.enable ?? defaults.ganalytics_enabled;
  if (ga) {
    const params: Partial<Record<UtmKey, string>> = {};
    for (const k of UTM_KEYS) {
      const v = t.ganalytics?.[k];
      if (v) params[k] = v;
    }
    out.ganalytics = params;
  }
  const footer = mail.mail_settings?.footer;
  if (footer?.enable === true && (footer.text || footer.html)) {
    out.footer = {
      ...(footer.text ? { text: footer.text } : {}),
      ...(footer.html ? { html: footer.html } : {}),
    };
  }
  if (mail.asm) out.asm = { groupId: mail.asm.group_id, groupsToDisplay: mail.asm.groups_to_display ?? [] };
  if (defaults.image_embed_mode === "cid") out.images = { mode: "cid" };
  return out;
}
