/**
 * `npm start`'s edge (scripts/lib/miniflare-dev.ts) names its bindings and state folders itself; they
 * must be the ones wrangler.toml declares, or `wrangler d1 execute DB --local` and `wrangler dev` would
 * read other state than `npm start` wrote. Also the [vars] reader it uses on wrangler.toml.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  COMPATIBILITY_DATE,
  D1_DATABASE_ID,
  R2_BUCKET,
  WORKER_NAME,
  wranglerVars,
} from "../../scripts/lib/miniflare-dev.ts";

const toml = fs.readFileSync(path.join(import.meta.dirname, "..", "..", "wrangler.toml"), "utf8");
const value = (key: string) => new RegExp(`^${key}\\s*=\\s*"([^"]*)"`, "m").exec(toml)?.[1];

describe("npm start's edge configuration", () => {
  it("uses wrangler.toml's worker name, compatibility date, D1 id, R2 bucket and Durable Object classes", () => {
    expect(value("name")).toBe(WORKER_NAME);
    expect(value("compatibility_date")).toBe(COMPATIBILITY_DATE);
    expect(value("database_id")).toBe(D1_DATABASE_ID);
    expect(value("bucket_name")).toBe(R2_BUCKET);
    expect([...toml.matchAll(/^class_name\s*=\s*"([^"]+)"/gm)].map((m) => m[1]).sort()).toEqual([
      "OriginHub",
      "RateLimiter",
      "WebhookQueue",
    ]);
    const source = fs.readFileSync(
      path.join(import.meta.dirname, "..", "..", "scripts", "lib", "miniflare-dev.ts"),
      "utf8",
    );
    expect(source).toContain('ORIGIN_HUB: { className: "OriginHub", useSQLite: true }');
    expect(source).toContain('RATE_LIMITER: { className: "RateLimiter", useSQLite: true }');
    expect(source).toContain('WEBHOOK_QUEUE: { className: "WebhookQueue", useSQLite: true }');
  });

  it("reads every [vars] entry of wrangler.toml and nothing from other tables", () => {
    const vars = wranglerVars(toml);
    expect(vars.MAIL_SEND_RATE_LIMIT).toBe("10000");
    expect(vars.DEV_MODE).toBe("false");
    expect(vars.HUB_REGIONS).toBe("");
    expect(vars).not.toHaveProperty("binding");
    const inTable = toml.split(/^\[vars\]$/m)[1]!.split(/^\[/m)[0]!;
    const keys = [...inTable.matchAll(/^([A-Z_][A-Z0-9_]*)\s*=/gm)].map((m) => m[1]);
    expect(Object.keys(vars).sort()).toEqual(keys.sort());
  });

  it("reads escapes and literal strings, and refuses what it cannot read instead of skipping it", () => {
    expect(wranglerVars('[vars]\nA = "x\\"y" # note\nB = \'c:\\\\d\'\n[other]\nC = "no"\n')).toEqual({
      A: 'x"y',
      B: "c:\\\\d",
    });
    expect(() => wranglerVars("[vars]\nN = 5\n")).toThrow(/cannot read/);
  });
});
