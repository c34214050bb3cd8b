/**
 * `GET /v3/auth/me` (docs/api/sendgrid.md#scaikey-jwts): who a ScaiKey JWT names, in which tenant,
 * with which roles and effective permissions. A JWT is required: an API key gets 401. The profile
 * fields are the token's OpenID Connect standard claims (`email`, `given_name`, `family_name`,
 * `name`), null when the token has none. The login flow (`/v3/auth/login`, `callback`, `refresh`,
 * `logout`) is not served. To be mounted at `/v3/auth` in app.ts.
 */
import { Hono } from "hono";
import { decodeJwt } from "jose";
import { AppError } from "../../../../shared/errors.ts";
import type { AppEnv } from "../../context.ts";
import { authenticate } from "../../middleware/auth.ts";
import { rateLimit } from "../../middleware/rate-limit.ts";
import { renderFastApi } from "../errors.ts";

const text = (v: unknown): string | null => (typeof v === "string" ? v : null);

export const authApi = new Hono<AppEnv>()
  .use(authenticate())
  .get("/me", rateLimit({ name: "auth.me", per: "credential", limit: () => 100, windowMs: 1000 }), (c) => {
    const p = c.get("principal");
    if (p.kind !== "jwt") throw new AppError("unauthorized", "This endpoint needs a ScaiKey JWT");
    // The middleware verified this very token; here it is only read.
    const claims = decodeJwt(
      c.req
        .header("authorization")!
        .replace(/^Bearer\s+/i, "")
        .trim(),
    );
    return c.json({
      id: p.subject,
      email: text(claims.email),
      first_name: text(claims.given_name),
      last_name: text(claims.family_name),
      display_name: text(claims.name),
      tenant_id: p.tenantId,
      roles: [...p.roles],
      permissions: [...p.scopes],
    });
  })
  .onError(renderFastApi);
