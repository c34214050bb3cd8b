import type { Bindings, Config } from "./env.ts";
import type { Db } from "./db/client.ts";

/** Who is calling. The tenant always comes from here, never from a request body. */
export type Principal =
  | {
      kind: "api_key";
      tenantId: string;
      keyId: string;
      environment: "live" | "test";
      scopes: readonly string[];
    }
  | {
      /** A ScaiKey-issued JWT (edge/src/services/jwt-auth.ts): a user acting in one tenant. */
      kind: "jwt";
      tenantId: string;
      /** `jwt:` + the token's `sub`: what per-credential rate limits count by. */
      keyId: string;
      subject: string;
      /** Users send live mail; sandbox sends take a test API key or `sandbox_mode`. */
      environment: "live";
      /** The roles it holds in the tenant: named in `roles`, mapped from `groups`, or assigned. */
      roles: readonly string[];
      groups: readonly string[];
      /** The tenant's partner, and whether the user administers it (docs/api/admin.md#partners). */
      partnerId: string | null;
      partnerAdmin: boolean;
      /** The permissions of `roles` (services/access.ts), checked exactly as an API key's scopes. */
      scopes: readonly string[];
    }
  | { kind: "operator" };

export interface AppVariables {
  config: Config;
  db: Db;
  requestId: string;
  principal: Principal;
}

export type AppEnv = { Bindings: Bindings; Variables: AppVariables };
