/**
 * `npm start`'s edge (scripts/lib/miniflare-dev.ts): a change in a watched folder rebundles the Worker
 * and restarts workerd on the same port, and the local D1 state written before is still there, in the
 * layout `wrangler d1 execute DB --local --persist-to <dir>` reads. The test watches a folder of its
 * own (not edge/, where a write would reload every other engineer's `wrangler dev` too); the reload
 * path after the change is the one an edit of edge/ takes.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminClient } from "../../scripts/lib/admin-client.ts";
import { startDevEdge, type DevEdge } from "../../scripts/lib/miniflare-dev.ts";
import { REPO_ROOT, wranglerEnv } from "../../scripts/lib/wrangler-dev.ts";

const adminToken = randomBytes(24).toString("hex");
let workDir: string;
let watched: string;
let edge: DevEdge | null = null;
const lines: string[] = [];

beforeAll(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-dev-edge-"));
  watched = path.join(workDir, "src");
  fs.mkdirSync(watched);
  edge = await startDevEdge({
    persistDir: path.join(workDir, "edge"),
    vars: {
      ORIGIN_TOKEN: randomBytes(24).toString("hex"),
      ADMIN_TOKEN: adminToken,
      SECRETS_KEY: randomBytes(32).toString("base64"),
      TRACKING_SECRET: randomBytes(24).toString("hex"),
      DEV_MODE: "true",
    },
    watchDirs: [watched],
    log: (line) => lines.push(line),
  });
});

afterAll(async () => {
  await edge?.stop();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

async function until<T>(what: string, ms: number, probe: () => T | undefined | false): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; log: ${lines.join(" | ")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("npm start's edge", () => {
  it("reloads on a source change on the same port and keeps the local D1 state", async () => {
    const admin = new AdminClient(edge!.url, adminToken);
    const tenant = await admin.createTenant("Before the reload");
    const domain = await admin.createDomain(tenant.id, "reload.test");
    expect(edge!.reloads()).toBe(0);

    fs.writeFileSync(path.join(watched, "changed.ts"), "export const x = 1;\n");
    await until("the reload", 60_000, () => edge!.reloads() === 1);

    const res = await fetch(`${edge!.url}/healthz`);
    expect(res.status).toBe(200);
    const after = await admin.getDomain(tenant.id, domain.id);
    expect(after.id).toBe(domain.id);
    expect(after.verified).toBe(true);

    // The same state through wrangler's own local D1 path.
    const r = spawnSync(
      path.join(REPO_ROOT, "node_modules", ".bin", "wrangler"),
      [
        "d1",
        "execute",
        "DB",
        "--local",
        "--persist-to",
        path.join(workDir, "edge"),
        "--json",
        "--command",
        `SELECT id FROM tenants WHERE id = '${tenant.id}'`,
      ],
      { cwd: REPO_ROOT, env: wranglerEnv(), encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { results: { id: string }[] }[];
    expect(out[0]!.results).toEqual([{ id: tenant.id }]);
  });
});
