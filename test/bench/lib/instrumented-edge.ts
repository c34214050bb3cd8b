/**
 * Round trips per accepted send and the latency model (issue 7's "Measured"): the edge Worker bundled
 * with test/edge/bench-worker/instrumented-worker.ts as its entry (the real Worker behind counting bindings),
 * on Miniflare in workerd, fresh state, bootstrapped through the admin API like the other bench edges.
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Miniflare } from "miniflare";
import { AdminClient } from "../../../scripts/lib/admin-client.ts";
import { REPO_ROOT, wranglerEnv } from "../../../scripts/lib/wrangler-dev.ts";
import { SENDER_DOMAIN } from "./mail.ts";
import { onCleanup, say } from "./procs.ts";
import type { RoundTrips } from "./counting-bindings.ts";

export interface InstrumentedEdge {
  url: string;
  apiKey: string;
  trips(): Promise<RoundTrips>;
  reset(): Promise<void>;
  setDelay(ms: number, only?: string[]): Promise<void>;
  stop(): Promise<void>;
}

function bundle(outDir: string): string {
  const entry = path.join(REPO_ROOT, "test", "edge", "bench-worker", "instrumented-worker.ts");
  const r = spawnSync(
    path.join(REPO_ROOT, "node_modules", ".bin", "wrangler"),
    ["deploy", "--dry-run", "--outdir", outDir, entry],
    { cwd: REPO_ROOT, env: wranglerEnv(), encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`bundling the instrumented Worker failed:\n${r.stdout}\n${r.stderr}`);
  // The entry's own name: the outdir also holds the bundle's Text modules, uPlot's .js among them.
  const js = fs.readdirSync(outDir).find((f) => f === `${path.basename(entry, ".ts")}.js`);
  if (!js) throw new Error(`no bundle in ${outDir}`);
  return path.join(outDir, js);
}

export async function startInstrumentedEdge(
  workDir: string,
  dohUrl: string,
  vars: Record<string, string> = {},
): Promise<InstrumentedEdge> {
  const persistDir = path.join(workDir, `state-instrumented-${Date.now()}`);
  fs.mkdirSync(persistDir, { recursive: true });
  say("   miniflare (instrumented bindings)");
  const scriptPath = bundle(path.join(persistDir, "bundle"));
  const secrets = {
    ORIGIN_TOKEN: randomBytes(24).toString("hex"),
    ADMIN_TOKEN: randomBytes(24).toString("hex"),
    SECRETS_KEY: randomBytes(32).toString("base64"),
    TRACKING_SECRET: randomBytes(24).toString("hex"),
  };
  const mf = new Miniflare({
    scriptPath,
    modules: true,
    // The bundle's .wasm modules (photon, the image library's decoder) load as compiled Wasm, as on Workers.
    // Text modules (wrangler.toml [[rules]]: stylesheets and uPlot, which the dashboard serves) load as strings.
    modulesRules: [
      { type: "CompiledWasm", include: ["**/*.wasm"] },
      { type: "Text", include: ["**/*.css", "**/*-uPlot.iife.min.js"] },
    ],
    compatibilityDate: "2026-08-01",
    compatibilityFlags: ["nodejs_compat"],
    d1Databases: { DB: "scaisend" },
    r2Buckets: ["BLOBS"],
    durableObjects: {
      ORIGIN_HUB: { className: "OriginHub", useSQLite: true },
      RATE_LIMITER: { className: "RateLimiter", useSQLite: true },
      WEBHOOK_QUEUE: { className: "WebhookQueue", useSQLite: true },
    },
    bindings: { ...secrets, DEV_MODE: "true", DNS_RESOLVER_URL: dohUrl, ...vars },
    d1Persist: path.join(persistDir, "d1"),
    durableObjectsPersist: path.join(persistDir, "do"),
    r2Persist: path.join(persistDir, "r2"),
    host: "127.0.0.1",
    port: 0,
  });
  const stop = onCleanup("instrumented edge", () => mf.dispose());
  const url = (await mf.ready).toString().replace(/\/$/, "");
  const db = await mf.getD1Database("DB");
  const dir = path.join(REPO_ROOT, "migrations");
  for (const file of fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".sql"))
    .sort()) {
    for (const statement of fs.readFileSync(path.join(dir, file), "utf8").split("--> statement-breakpoint")) {
      if (statement.trim()) await db.prepare(statement).run();
    }
  }
  const admin = new AdminClient(url, secrets.ADMIN_TOKEN);
  const tenant = await admin.createTenant("Bench round trips");
  const key = await admin.createApiKey(tenant.id, {
    name: "bench",
    environment: "live",
    scopes: ["mail.send"],
  });
  const domain = await admin.createDomain(tenant.id, SENDER_DOMAIN);
  if (!domain.verified)
    throw new Error(`sender domain ${SENDER_DOMAIN} is not verified although DEV_MODE=true`);
  return {
    url,
    apiKey: key.api_key,
    trips: async () => (await (await fetch(`${url}/__bench/trips`)).json()) as RoundTrips,
    reset: async () => void (await (await fetch(`${url}/__bench/reset`, { method: "POST" })).text()),
    setDelay: async (ms, only = []) =>
      void (await (
        await fetch(`${url}/__bench/delay?ms=${ms}&only=${only.join(",")}`, { method: "POST" })
      ).text()),
    stop,
  };
}
