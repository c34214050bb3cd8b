/**
 * SenderKit's public API under /v1 (docs/api/senderkit.md), in SenderKit's error dialect
 * (errors.ts). Authenticated with SenderKit keys only (auth.ts); rate-limited per key with a send
 * budget (POST /send, DELETE /messages/{id}) and a read budget (everything else). Templates
 * (/v1/templates*) are their own module (templates.ts).
 *   GET    /v1/openapi.json      the contract (shared/senderkit/openapi.yaml as JSON), public
 *   GET    /v1/context           the key's workspace and mode
 *   POST   /v1/send              send.ts
 *   GET    /v1/messages          messages.ts (and ?tail=1, SSE: tail.ts)
 *   GET    /v1/messages/{id}
 *   DELETE /v1/messages/{id}
 * Anything else under /v1 is `404 not_found`.
 */
import { Hono } from "hono";
import openapi from "../../../../shared/senderkit/openapi.json" with { type: "json" };
import type { AppEnv } from "../../context.ts";
import { readBudget } from "./budgets.ts";
import { workspaceUuid } from "../../services/senderkit/messages.ts";
import { skAuthenticate, skPrincipal } from "./auth.ts";
import { renderSenderKit, SkError } from "./errors.ts";
import { skMessagesApi } from "./messages.ts";
import { skSendApi } from "./send.ts";
import { skTemplatesApi } from "./templates.ts";

export const senderkitApi = new Hono<AppEnv>()
  .get("/openapi.json", (c) => c.json(openapi))
  .use(skAuthenticate())
  .get("/context", readBudget, async (c) => {
    const p = skPrincipal(c);
    // `slug` is read when the tenants table has it (docs/api/admin.md#tenants); else the id serves.
    const t = await c
      .get("db")
      .$client.prepare("SELECT * FROM tenants WHERE id = ?")
      .bind(p.tenantId)
      .first<{ id: string; name: string; slug?: string | null }>();
    if (!t) throw new SkError(404, "workspace_not_found", "The API key's workspace no longer exists");
    return c.json({
      workspace: { id: await workspaceUuid(t.id), slug: t.slug ?? t.id.toLowerCase(), name: t.name },
      mode: p.environment,
    });
  })
  .route("/send", skSendApi)
  .route("/messages", skMessagesApi)
  .route("/templates", skTemplatesApi)
  .all("*", () => {
    throw new SkError(404, "not_found", "No such route in the SenderKit API");
  });

senderkitApi.onError(renderSenderKit);
