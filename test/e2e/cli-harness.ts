/**
 * The set-up the CLI e2e files shared by copy: the edge Worker in workerd (Miniflare, with persisted
 * state in a work directory under .tmp/), a fresh operator token, `bin/scaisend.mjs <command>` run as
 * an operator runs it (its own process, the repo's node, only PATH/HOME and the edge's URL and token
 * in its environment), and the admin / SenderKit API called directly to check what the CLI did.
 *
 * `useCliEdge()` registers the beforeAll / afterAll hooks of the calling file; the edge stops (and
 * the work directory goes) in afterAll. Used by every CLI e2e file: `command` is the first word of
 * every run (`providers`, `sk-templates`) or undefined for files that run several commands;
 * `vars` may be a function, called in the beforeAll before the edge starts, for a file whose edge
 * needs a server of its own first (a loopback DNS resolver, a fake ScaiKey); `edgeEnv: false` leaves
 * the edge's URL and token out of the CLI's environment, for a file that checks the flags that give
 * them (a run can still pass them with `env`).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect } from "vitest";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";

const BIN = path.join(REPO_ROOT, "node_modules", ".bin");

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** More environment for this run (over PATH/HOME and, unless `edgeEnv: false`, the edge's URL and token). */
  env?: Record<string, string>;
}

type Vars = Record<string, string>;

export interface CliEdgeOptions {
  /** The work directory's name prefix under .tmp/. */
  dirPrefix: string;
  /** The Worker's vars over the harness's (fresh secrets, DEV_MODE false), or a function returning them. */
  vars?: Vars | (() => Vars | Promise<Vars>);
  /** SCAISEND_EDGE_URL and SCAISEND_ADMIN_TOKEN in every run's environment (default true). */
  edgeEnv?: boolean;
  /** A run's time limit (default 30 s) and output limit (default execFile's 1 MiB). */
  timeoutMs?: number;
  maxBuffer?: number;
}

export interface CliEdge {
  readonly mf: MiniflareEdge;
  readonly workDir: string;
  readonly adminToken: string;
  /** Runs `scaisend <command> ...args`, with `stdin` written to its standard input (empty if none). */
  scaisend(args: string[], stdin?: string, opts?: RunOptions): Promise<Run>;
  /** The same with `--json`: expects exit 0 and returns the parsed output. */
  json(args: string[], stdin?: string, opts?: RunOptions): Promise<any>;
  api(method: string, p: string, token: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** Writes `value` as JSON to `name` in the work directory and returns its path. */
  file(name: string, value: unknown): string;
}

export function useCliEdge(command: string | undefined, opts: CliEdgeOptions): CliEdge {
  let mf: MiniflareEdge | undefined;
  let workDir: string | undefined;
  const adminToken = randomBytes(24).toString("hex");

  beforeAll(async () => {
    fs.mkdirSync(path.join(REPO_ROOT, ".tmp"), { recursive: true });
    workDir = fs.mkdtempSync(path.join(REPO_ROOT, ".tmp", opts.dirPrefix));
    const vars = typeof opts.vars === "function" ? await opts.vars() : opts.vars;
    mf = await startMiniflareEdge({
      persistDir: path.join(workDir, "edge"),
      vars: {
        ORIGIN_TOKEN: randomBytes(24).toString("hex"),
        ADMIN_TOKEN: adminToken,
        SECRETS_KEY: randomBytes(32).toString("base64"),
        TRACKING_SECRET: randomBytes(24).toString("hex"),
        DEV_MODE: "false",
        ...vars,
      },
    });
  }, 180_000);

  afterAll(async () => {
    await mf?.stop();
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  });

  const edge: CliEdge = {
    get mf() {
      if (!mf) throw new Error("the CLI edge is not started (used outside a test?)");
      return mf;
    },
    get workDir() {
      if (!workDir) throw new Error("the CLI edge is not started (used outside a test?)");
      return workDir;
    },
    adminToken,
    scaisend(args, stdin, run) {
      return new Promise((resolve) => {
        const child = execFile(
          path.join(BIN, "node"),
          [path.join(REPO_ROOT, "bin", "scaisend.mjs"), ...(command ? [command] : []), ...args],
          {
            cwd: REPO_ROOT,
            env: {
              PATH: `${BIN}:${process.env.PATH ?? ""}`,
              HOME: process.env.HOME ?? "/tmp",
              ...(opts.edgeEnv === false
                ? {}
                : { SCAISEND_EDGE_URL: edge.mf.url, SCAISEND_ADMIN_TOKEN: adminToken }),
              ...run?.env,
            },
            timeout: opts.timeoutMs ?? 30_000,
            ...(opts.maxBuffer ? { maxBuffer: opts.maxBuffer } : {}),
          },
          (err, stdout, stderr) => {
            resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr });
          },
        );
        child.stdin?.end(stdin ?? "");
      });
    },
    async json(args, stdin, run) {
      const r = await edge.scaisend([...args, "--json"], stdin, run);
      expect(r.code, r.stderr + r.stdout).toBe(0);
      return JSON.parse(r.stdout);
    },
    async api(method, p, token, body) {
      const res = await fetch(`${edge.mf.url}${p}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
    file(name, value) {
      const p = path.join(edge.workDir, name);
      fs.writeFileSync(p, JSON.stringify(value));
      return p;
    },
  };
  return edge;
}
