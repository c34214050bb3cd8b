/**
 * createApp(): middleware order and one sub-app per API surface; each owns its error dialect.
 *   /v3/mail/send         SendGrid v3 (errors[]), authenticated, rate-limited per tenant
 *   /v3/messages          ScaiSend reads (detail)
 *   /v3/templates         SendGrid's templates and versions (errors[])
 *   /v3/mail/batch        batch ids; /v3/user/scheduled_sends pauses and cancels batches (errors[])
 *   /v3/messages/{id}/cancel  cancels a message not yet handed to an origin (detail)
 *   /v3/user/webhooks     webhook endpoints (detail) and SendGrid's Event Webhook settings (errors[])
 *   /v3/stats, /v3/categories/stats  stats counters (errors[])
 *   /v3/images            the image library (detail); /i/{id} its public, immutable URLs
 *   /i/p/{token}          the signed proxy for external images in messages (image-proxy.ts)
 *   /v3/api_keys, /v3/scopes  API keys managed by API keys (detail and errors[] side by side)
 *   /api/admin/*          native admin API (detail, {data})
 *   /link                 origin WebSocket, authenticated with ORIGIN_TOKEN
 *   /origin/blobs/*       attachments and large bodies for the origin (ORIGIN_TOKEN)
 *   /origin/templates/*   template snapshots for the origin (ORIGIN_TOKEN)
 *   /t/*                  public tracking: open pixel, click redirect, unsubscribe page (token-signed)
 *   /webhooks/scaikey     ScaiKey's identity sync events, ScaiKey-signed (docs/scaikey.md#webhook)
 *   /v1/*                 SenderKit's API (errors {error:{code,message}}), SenderKit keys (docs/api/senderkit.md)
 *   /app/*                the tenant's web dashboard (HTML, session cookie; docs/dashboard.md)
 *   /healthz              liveness
 */
import { Hono } from "hono";
import { AppError } from "../../shared/errors.ts";
import type { AppEnv } from "./context.ts";
import { createDb } from "./db/client.ts";
import { loadConfig } from "./env.ts";
import { timingSafeEqualStrings } from "./lib/crypto.ts";
import { allShards, layoutOf } from "./lib/shards.ts";
import { hubStub } from "./services/hub-client.ts";
import { requestId } from "./middleware/request-id.ts";
import { catalogCache } from "./services/catalog-cache.ts";
import { adminApi } from "./surfaces/admin/index.ts";
import { renderFastApi } from "./surfaces/errors.ts";
import { mailSend } from "./surfaces/sendgrid/mail-send.ts";
import { authApi } from "./surfaces/sendgrid/auth.ts";
import { messagesApi } from "./surfaces/sendgrid/messages.ts";
import { batchesApi } from "./surfaces/sendgrid/batches.ts";
import { messageActionsApi } from "./surfaces/sendgrid/message-actions.ts";
import { scheduledSendsApi } from "./surfaces/sendgrid/scheduled-sends.ts";
import { templatesApi } from "./surfaces/sendgrid/templates.ts";
import { suppressionsApi } from "./surfaces/sendgrid/suppressions.ts";
import { asmApi } from "./surfaces/sendgrid/asm.ts";
import { eventWebhookApi, webhooksApi } from "./surfaces/sendgrid/webhooks.ts";
import { categoryStatsApi, statsApi } from "./surfaces/sendgrid/stats.ts";
import { originBlobs } from "./surfaces/origin/blobs.ts";
import { imagesApi } from "./surfaces/sendgrid/images.ts";
import { apiKeysApi, scopesApi } from "./surfaces/sendgrid/api-keys.ts";
import { externalImageProxy } from "./surfaces/public/image-proxy.ts";
import { imageProxy } from "./surfaces/public/images.ts";
import { trackingApi } from "./surfaces/tracking/index.ts";
import { senderkitApi } from "./surfaces/senderkit/index.ts";
import { dashboardApp } from "./surfaces/dashboard/index.tsx";
import { dashboardLoginsAdminApi } from "./surfaces/dashboard/admin-logins.ts";
import { scaikeyWebhook } from "./surfaces/scaikey-webhook.ts";

export function createApp() {
  const app = new Hono<AppEnv>();

  app.use(requestId());
  app.use(async function configAndDb(c, next) {
    const loaded = loadConfig(c.env);
    if (!loaded.ok) {
      console.error(
        JSON.stringify({ level: "error", msg: "invalid configuration", problems: loaded.problems }),
      );
      return c.json({ detail: "Server misconfigured", problems: loaded.problems }, 500);
    }
    c.set("config", loaded.config);
    c.set("db", createDb(c.env.DB));
    // Reads made below the middleware (the send path's sender domains) use this isolate's TTL.
    catalogCache.ttlMs = loaded.config.AUTH_CACHE_TTL_MS;
    return next();
  });

  app.get("/healthz", (c) => c.json({ status: "healthy" }));
  app.get("/health", (c) => c.json({ status: "healthy" }));

  app.get("/link", async (c) => {
    const header = c.req.header("authorization") ?? "";
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1] ?? "";
    if (!(await timingSafeEqualStrings(token, c.get("config").ORIGIN_TOKEN))) {
      throw new AppError("unauthorized", "Invalid origin token");
    }
    // Link index N → the Nth shard of the layout (edge/src/lib/shards.ts); the welcome lists their names.
    const hubs = allShards(layoutOf(c.get("config")));
    const shard = Number(c.req.query("shard") ?? "0");
    if (!Number.isInteger(shard) || shard < 0 || shard >= hubs.length) {
      throw new AppError("invalid_request", `shard must be an integer from 0 to ${hubs.length - 1}`);
    }
    return hubStub(c.env, hubs[shard]!).fetch(c.req.raw);
  });

  app.route("/t", trackingApi);
  app.route("/origin/blobs", originBlobs);
  app.route("/origin/templates", originBlobs);
  app.route("/v3/mail/send", mailSend);
  app.route("/v3/mail/batch", batchesApi);
  app.route("/v3/user/scheduled_sends", scheduledSendsApi);
  app.route("/v3/messages", messageActionsApi);
  app.route("/v3/messages", messagesApi);
  app.route("/v3/templates", templatesApi);
  app.route("/v3/suppression", suppressionsApi);
  app.route("/v3/asm", asmApi);
  // SendGrid's /event/* paths before the endpoints' /:id, which would take "event" as an id.
  app.route("/v3/user/webhooks/event", eventWebhookApi);
  app.route("/v3/user/webhooks", webhooksApi);
  app.route("/v3/stats", statsApi);
  app.route("/v3/categories", categoryStatsApi);
  app.route("/v3/images", imagesApi);
  app.route("/v3/api_keys", apiKeysApi);
  app.route("/v3/scopes", scopesApi);
  app.route("/v3/auth", authApi);
  app.route("/i/p", externalImageProxy);
  app.route("/i", imageProxy);
  // Dashboard logins (docs/api/admin.md#dashboard-logins) before the admin API, which would 404 them.
  app.route("/api/admin/tenants/:id/logins", dashboardLoginsAdminApi);
  app.route("/api/admin", adminApi);
  app.route("/v1", senderkitApi);
  app.route("/app", dashboardApp);
  app.route("/webhooks/scaikey", scaikeyWebhook);

  app.notFound((c) => c.json({ detail: "Not Found" }, 404));
  app.onError(renderFastApi);
  return app;
}
