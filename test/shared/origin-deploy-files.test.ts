/**
 * The origin's deployment files cannot be run here (no Docker engine on these machines), so they
 * are kept right by reading them: every setting they name is one the origin knows, the example
 * environment plus each compose service's environment is a configuration the origin accepts, and
 * the image prepares what the production defaults need (docs/operations.md, "With Docker Compose").
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { defaultJournalDir, loadOriginConfig, OriginConfigSchema } from "../../origin/src/config.ts";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";

const read = (file: string) => fs.readFileSync(path.join(REPO_ROOT, file), "utf8");
const compose = read("docker-compose.origin.yml");
const example = read(".env.origin.example");
const dockerfile = read("origin/Dockerfile");
const known = new Set(Object.keys(OriginConfigSchema.shape));

/** `KEY=value` lines of the example, commented (`# KEY=value`) ones included when asked. */
function exampleEnv(withCommented: boolean): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of example.split("\n")) {
    const m = /^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m && (withCommented || !m[1])) env[m[2]!] = m[3]!;
  }
  return env;
}

/**
 * The environment one compose service gets: the `x-origin-env` anchor merged with the service's own
 * `environment:` block (the two-space-indented `KEY: value` lines the file uses; no YAML parser
 * is installed, and the file keeps to this form so this test can read it).
 */
function serviceEnv(service: string): Record<string, string> {
  const block = (start: RegExp): Record<string, string> => {
    const lines = compose.split("\n");
    const from = lines.findIndex((l) => start.test(l));
    if (from < 0) throw new Error(`no ${start} in docker-compose.origin.yml`);
    const env: Record<string, string> = {};
    const indent = /^(\s*)/.exec(lines[from]!)![1]!.length;
    for (const line of lines.slice(from + 1)) {
      if (line.trim() === "" || line.trim().startsWith("#")) continue;
      if (/^(\s*)/.exec(line)![1]!.length <= indent) break;
      const m = /^\s+([A-Z][A-Z0-9_]*): "?([^"]*)"?$/.exec(line);
      if (m) env[m[1]!] = m[2]!;
    }
    return env;
  };
  const servicesAt = compose.indexOf("\nservices:");
  const own = compose.slice(servicesAt).split(new RegExp(`\\n  ${service}:\\n`))[1];
  if (own === undefined) throw new Error(`no service ${service}`);
  const ownEnv = (() => {
    const m = /\n {4}environment:\n([\s\S]*?)\n {4}\S/.exec(own);
    const env: Record<string, string> = {};
    for (const line of (m?.[1] ?? "").split("\n")) {
      const kv = /^ {6}([A-Z][A-Z0-9_]*): "?([^"]*)"?$/.exec(line);
      if (kv) env[kv[1]!] = kv[2]!;
    }
    return env;
  })();
  return { ...block(/^x-origin-env: &origin-env$/), ...ownEnv };
}

describe("the origin's deployment files", () => {
  it("name only settings the origin knows", () => {
    const named = [
      ...Object.keys(exampleEnv(true)),
      ...Object.keys(serviceEnv("origin-1")),
      ...Object.keys(serviceEnv("origin-2")),
    ];
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((k) => !known.has(k))).toEqual([]);
  });

  it("make a configuration the origin accepts for each node, with its own NODE_ID and the inbound server on one", () => {
    const nodeIds = new Set<string>();
    for (const service of ["origin-1", "origin-2"]) {
      const env = { ...exampleEnv(false), ...serviceEnv(service), NODE_ENV: "production" };
      // The example's placeholders are what a user replaces; they still have the right form.
      const config = loadOriginConfig(env);
      expect(config.REDIS_URL).toBe("redis://redis:6379");
      expect(config.HTTP_HOST).toBe("0.0.0.0");
      nodeIds.add(config.NODE_ID);
      if (service === "origin-1") {
        expect(config.INBOUND_SMTP_PORT).toBe(2525);
        // The inbound server refuses to start without a domain to take mail for.
        expect(config.RETURN_PATH_DOMAIN).toBeTruthy();
        expect(compose).toMatch(/- "25:2525"/);
      } else {
        expect(config.INBOUND_SMTP_PORT).toBeUndefined();
      }
      expect(compose).toMatch(new RegExp(`- ${service}-state:${path.dirname(config.JOURNAL_DIR)}\\n`));
    }
    expect(nodeIds).toEqual(new Set(["origin-1", "origin-2"]));
  });

  it("build an image that prepares the production journal directory for its unprivileged user", () => {
    const journal = defaultJournalDir({ NODE_ENV: "production" });
    expect(dockerfile).toMatch(/^ENV NODE_ENV=production$/m);
    const mkdir = /^RUN mkdir -p (\S+) && chown -R node:node (\S+)$/m.exec(dockerfile);
    expect(mkdir?.[1]).toBe(journal);
    expect(journal.startsWith(`${mkdir?.[2]}/`)).toBe(true);
    // The directory is created before the image switches to the unprivileged user.
    expect(dockerfile.indexOf("RUN mkdir -p")).toBeLessThan(dockerfile.indexOf("USER node"));
  });

  it("keep Redis's state across restarts (warm-up counters and back-off)", () => {
    expect(compose).toMatch(/redis-server", "--appendonly", "yes"/);
    expect(compose).toMatch(/- redis-data:\/data/);
  });
});
