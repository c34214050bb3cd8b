/**
 * The merge of a request's tracking_settings and mail_settings.footer over the tenant's defaults
 * (shared/tracking/settings.ts; docs/api/tracking.md#settings): a key the request sets wins, one it
 * leaves out keeps the default, and what is off is absent from the job.
 */
import { describe, expect, it } from "vitest";
import {
  DEFAULT_TENANT_TRACKING,
  JobTrackingSchema,
  mergeTracking,
  tenantDefaults,
} from "../../shared/tracking/settings.ts";

describe("mergeTracking", () => {
  it("applies the documented defaults: open and click (HTML only) on, the rest off", () => {
    expect(mergeTracking(DEFAULT_TENANT_TRACKING, {})).toEqual({ open: {}, click: { enableText: false } });
  });

  it("turns off only what the request turns off", () => {
    expect(
      mergeTracking(DEFAULT_TENANT_TRACKING, { tracking_settings: { click_tracking: { enable: false } } }),
    ).toEqual({
      open: {},
    });
    // enable_text alone keeps click tracking's default (on) and overrides the text default.
    expect(
      mergeTracking(DEFAULT_TENANT_TRACKING, {
        tracking_settings: { click_tracking: { enable_text: true } },
      }),
    ).toEqual({ open: {}, click: { enableText: true } });
  });

  it("lets a request turn on what the tenant has off, with its own values, and keeps the tenant's on values", () => {
    const defaults = tenantDefaults({ open_tracking_enabled: false, ganalytics_enabled: true });
    expect(
      mergeTracking(defaults, {
        tracking_settings: {
          open_tracking: { enable: true, substitution_tag: "%open%" },
          subscription_tracking: { enable: true, html: "<% Leave %>", text: "Leave: <% %>" },
          ganalytics: { utm_campaign: "spring", utm_source: "" },
        },
        mail_settings: { footer: { enable: true, html: "<p>Acme</p>" } },
        asm: { group_id: 5 },
      }),
    ).toEqual({
      open: { substitutionTag: "%open%" },
      click: { enableText: false },
      subscription: { html: "<% Leave %>", text: "Leave: <% %>" },
      ganalytics: { utm_campaign: "spring" },
      footer: { html: "<p>Acme</p>" },
      asm: { groupId: 5, groupsToDisplay: [] },
    });
  });

  it("ignores a footer that is off or empty, and the result always fits the job schema", () => {
    const off = mergeTracking(DEFAULT_TENANT_TRACKING, {
      mail_settings: { footer: { enable: false, text: "x" } },
    });
    expect(off.footer).toBeUndefined();
    const empty = mergeTracking(DEFAULT_TENANT_TRACKING, { mail_settings: { footer: { enable: true } } });
    expect(empty.footer).toBeUndefined();
    expect(JobTrackingSchema.parse(empty)).toEqual(empty);
  });
});

describe("tenantDefaults", () => {
  it("fills what a stored row lacks and ignores what is not a boolean", () => {
    expect(tenantDefaults(null)).toEqual(DEFAULT_TENANT_TRACKING);
    expect(
      tenantDefaults({ click_tracking_enabled: false, open_tracking_enabled: "no" as unknown as boolean }),
    ).toEqual({
      ...DEFAULT_TENANT_TRACKING,
      click_tracking_enabled: false,
    });
  });
});
