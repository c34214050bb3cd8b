/**
 * The default roles every tenant starts with (docs/api/admin.md#permissions): what a ScaiKey JWT's
 * `roles` claim grants. Role names the deployment does not know grant nothing.
 */
import { PERMISSIONS, type Permission } from "./permissions.ts";

export const DEFAULT_ROLES: Readonly<Record<string, readonly Permission[]>> = {
  admin: PERMISSIONS,
  developer: ["mail.send", "mail.schedule", "templates.read", "stats.read", "webhooks.read"],
};

/** The union of the permissions of `roles`, in PERMISSIONS order; unknown role names add nothing. */
export function permissionsOfRoles(roles: readonly string[]): Permission[] {
  const granted = new Set<Permission>();
  for (const role of roles) {
    if (!Object.hasOwn(DEFAULT_ROLES, role)) continue;
    for (const p of DEFAULT_ROLES[role]!) granted.add(p);
  }
  return PERMISSIONS.filter((p) => granted.has(p));
}
