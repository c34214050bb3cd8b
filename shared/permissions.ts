/** The complete permission set (docs/api/admin.md#permissions). API key scopes are checked against the same names. */
export const PERMISSIONS = [
  "mail.send",
  "mail.schedule",
  "mail.cancel",
  "templates.read",
  "templates.write",
  "templates.delete",
  "suppressions.read",
  "suppressions.write",
  "stats.read",
  "stats.export",
  "webhooks.read",
  "webhooks.write",
  "domains.read",
  "domains.write",
  "admin.api_keys",
  "admin.users",
  "admin.settings",
] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** The built-in `admin` role: every permission. */
export const ADMIN_SCOPES: readonly Permission[] = PERMISSIONS;
