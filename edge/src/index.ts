/** Worker entry: the HTTP app, the cron sweeper (edge/src/services/sweeper.ts), and the Durable Object classes. */
import { createApp } from "./app.ts";
import { createDb } from "./db/client.ts";
import { loadConfig, type Bindings } from "./env.ts";
import { enqueueLegacy, flushAllShards } from "./services/hub-client.ts";
import { sweep } from "./services/sweeper.ts";
import { blobRetentionMs, sweepBlobDays } from "./services/blobs.ts";
import { sweepTemplateSnapshots } from "./services/template-snapshots.ts";

export { OriginHub } from "./objects/origin-hub.ts";
export { RateLimiter } from "./objects/rate-limiter.ts";

const app = createApp();

export default {
  fetch: app.fetch,
  async scheduled(_controller, env, ctx) {
    const loaded = loadConfig(env);
    if (!loaded.ok) {
      console.error(
        JSON.stringify({ level: "error", msg: "invalid configuration", problems: loaded.problems }),
      );
      return;
    }
    const config = loaded.config;
    // Attachments and large bodies of days no message can still need (services/blobs.ts, retention).
    ctx.waitUntil(
      sweepBlobDays(env.BLOBS, Date.now(), blobRetentionMs(config.MAX_QUEUE_AGE_MS)).then(
        (deleted) => {
          if (deleted > 0)
            console.log(JSON.stringify({ level: "info", msg: "blobs past retention deleted", deleted }));
        },
        (err: unknown) =>
          console.error(
            JSON.stringify({
              level: "error",
              msg: "blob sweep failed",
              error: err instanceof Error ? err.message : String(err),
            }),
          ),
      ),
    );
    // Template snapshots no version names any more, once no accepted message can still need them.
    ctx.waitUntil(
      sweepTemplateSnapshots(
        env.BLOBS,
        createDb(env.DB),
        Date.now(),
        blobRetentionMs(config.MAX_QUEUE_AGE_MS),
      ).then(
        (r) => {
          if (r.deleted > 0 || r.marked > 0)
            console.log(JSON.stringify({ level: "info", msg: "template snapshots swept", ...r }));
        },
        (err: unknown) =>
          console.error(
            JSON.stringify({
              level: "error",
              msg: "template snapshot sweep failed",
              error: err instanceof Error ? err.message : String(err),
            }),
          ),
      ),
    );
    ctx.waitUntil(
      sweep(
        {
          db: createDb(env.DB),
          enqueueLegacy: (entries) => enqueueLegacy(env, config, entries),
          flushShards: () => flushAllShards(env, config),
        },
        Date.now(),
      ).then(
        ({ requeued, uncatalogued }) => {
          if (requeued > 0) {
            console.log(
              JSON.stringify({ level: "info", msg: "sweeper re-enqueued legacy messages", count: requeued }),
            );
          }
          if (uncatalogued > 0) {
            console.error(
              JSON.stringify({
                level: "warn",
                msg: "accepted messages still waiting for the D1 catalog",
                count: uncatalogued,
              }),
            );
          }
        },
        // A failed sweep (D1 or a hub unreachable) is retried by the next cron tick; log it rather
        // than leave an unhandled rejection with no context in the logs.
        (err: unknown) => {
          console.error(
            JSON.stringify({
              level: "error",
              msg: "sweeper failed",
              error: err instanceof Error ? err.message : String(err),
              // drizzle wraps D1's error; its cause is the part that says what went wrong.
              ...(err instanceof Error && err.cause instanceof Error ? { cause: err.cause.message } : {}),
            }),
          );
        },
      ),
    );
  },
} satisfies ExportedHandler<Bindings>;
