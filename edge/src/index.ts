/** Worker entry: the HTTP app, the cron sweeper (edge/src/services/sweeper.ts), and the Durable Object classes. */
import { createApp } from "./app.ts";
import { createDb } from "./db/client.ts";
import { loadConfig, type Bindings } from "./env.ts";
import { enqueueLegacy, flushAllShards } from "./services/hub-client.ts";
import { sweep } from "./services/sweeper.ts";
import { sweepEndedSessions } from "./services/dashboard-sessions.ts";
import { blobRetentionMs, sweepBlobDays } from "./services/blobs.ts";
import { sweepTemplateSnapshots } from "./services/template-snapshots.ts";

export { OriginHub } from "./objects/origin-hub.ts";
export { RateLimiter } from "./objects/rate-limiter.ts";
export { WebhookQueue } from "./objects/webhook-queue.ts";

const app = createApp();

const log = (level: "info" | "warn" | "error", msg: string, extra: Record<string, unknown> = {}) =>
  (level === "info" ? console.log : console.error)(JSON.stringify({ level, msg, ...extra }));

/**
 * One cron task: runs past the handler's return (`waitUntil`), and a failure (D1, R2 or a hub
 * unreachable) is logged with its cause rather than left as an unhandled rejection; the next cron
 * tick retries it.
 */
function cronTask<T>(ctx: ExecutionContext, name: string, task: Promise<T>, done: (r: T) => void): void {
  ctx.waitUntil(
    task.then(done, (err: unknown) =>
      log("error", `${name} failed`, {
        error: err instanceof Error ? err.message : String(err),
        // drizzle wraps D1's error; its cause is the part that says what went wrong.
        ...(err instanceof Error && err.cause instanceof Error ? { cause: err.cause.message } : {}),
      }),
    ),
  );
}

export default {
  fetch: app.fetch,
  async scheduled(_controller, env, ctx) {
    const loaded = loadConfig(env);
    if (!loaded.ok) {
      log("error", "invalid configuration", { problems: loaded.problems });
      return;
    }
    const config = loaded.config;
    const retentionMs = blobRetentionMs(config.MAX_QUEUE_AGE_MS);
    // Attachments and large bodies of days no message can still need (services/blobs.ts, retention).
    cronTask(ctx, "blob sweep", sweepBlobDays(env.BLOBS, Date.now(), retentionMs), (deleted) => {
      if (deleted > 0) log("info", "blobs past retention deleted", { deleted });
    });
    // Template snapshots no version names any more, once no accepted message can still need them.
    cronTask(
      ctx,
      "template snapshot sweep",
      sweepTemplateSnapshots(env.BLOBS, createDb(env.DB), Date.now(), retentionMs),
      (r) => {
        if (r.deleted > 0 || r.marked > 0) log("info", "template snapshots swept", { ...r });
      },
    );
    // Ended dashboard sessions and stale sign-in counters (services/dashboard-sessions.ts), bounded per run.
    cronTask(ctx, "dashboard session sweep", sweepEndedSessions(createDb(env.DB), Date.now()), (r) => {
      if (r.sessions > 0) log("info", "ended dashboard sessions deleted", { ...r });
    });
    cronTask(
      ctx,
      "sweeper",
      sweep(
        {
          db: createDb(env.DB),
          enqueueLegacy: (entries) => enqueueLegacy(env, config, entries),
          flushShards: () => flushAllShards(env, config),
        },
        Date.now(),
      ),
      ({ requeued, uncatalogued }) => {
        if (requeued > 0) log("info", "sweeper re-enqueued legacy messages", { count: requeued });
        if (uncatalogued > 0)
          log("warn", "accepted messages still waiting for the D1 catalog", { count: uncatalogued });
      },
    );
  },
} satisfies ExportedHandler<Bindings>;
