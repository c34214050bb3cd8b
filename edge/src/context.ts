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
  | { kind: "operator" };

export interface AppVariables {
  config: Config;
  db: Db;
  requestId: string;
  principal: Principal;
}

export type AppEnv = { Bindings: Bindings; Variables: AppVariables };
