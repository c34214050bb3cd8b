/**
 * The shared start of the admin-API CLI commands (scripts/lib/admin-command.ts): usage, required
 * options and the exit codes every `scaisend <noun> <verb>` command promises (docs/operations.md):
 * 0 done, 1 the API refused (its reason printed), 2 a usage error. Driven through a real command
 * (`providers`) against a loopback HTTP server that answers as the admin API does.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../scripts/lib/admin-command.ts";
import { PROVIDERS_USAGE, runProvidersCli } from "../../scripts/lib/providers-cli.ts";

function captureIo(): CliIo & { outs: string[]; errs: string[] } {
  const outs: string[] = [];
  const errs: string[] = [];
  return { outs, errs, out: (l) => outs.push(l), err: (l) => errs.push(l), stdin: () => "" };
}

describe("admin CLI commands: usage and exit codes", () => {
  let server: http.Server;
  let edge = "";
  const seen: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ detail: "tenant not found" }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    edge = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const auth = () => ["--edge", edge, "--admin-token", "t0ken"];

  it("--help and a bare noun print the usage and exit 0, without calling the API", async () => {
    for (const argv of [["--help"], []]) {
      const io = captureIo();
      expect(await runProvidersCli(argv, io)).toBe(0);
      expect(io.outs).toEqual([PROVIDERS_USAGE]);
    }
    expect(seen).toEqual([]);
  });

  it("a missing required option names itself and the verb, exit 2, no request", async () => {
    const io = captureIo();
    expect(await runProvidersCli(["list", ...auth()], io)).toBe(2);
    expect(io.errs).toEqual(['scaisend: --tenant is required for "providers list"']);
    const empty = captureIo();
    expect(await runProvidersCli(["remove", "--tenant", "t1", "--id", "", ...auth()], empty)).toBe(2);
    expect(empty.errs).toEqual(['scaisend: --id is required for "providers remove"']);
    expect(seen).toEqual([]);
  });

  it("an unknown verb prints the usage, exit 2", async () => {
    const io = captureIo();
    expect(await runProvidersCli(["frobnicate", ...auth()], io)).toBe(2);
    expect(io.errs).toEqual([`scaisend: unknown command "providers frobnicate"\n${PROVIDERS_USAGE}`]);
  });

  it("an unknown flag and a missing edge are usage errors, exit 2", async () => {
    const flag = captureIo();
    expect(await runProvidersCli(["list", "--bogus", ...auth()], flag)).toBe(2);
    expect(flag.errs[0]).toMatch(/^scaisend: .*bogus/);
    const noEdge = captureIo();
    const saved = { edge: process.env.SCAISEND_EDGE_URL, token: process.env.SCAISEND_ADMIN_TOKEN };
    delete process.env.SCAISEND_EDGE_URL;
    delete process.env.SCAISEND_ADMIN_TOKEN;
    try {
      expect(await runProvidersCli(["list", "--tenant", "t1"], noEdge)).toBe(2);
    } finally {
      if (saved.edge !== undefined) process.env.SCAISEND_EDGE_URL = saved.edge;
      if (saved.token !== undefined) process.env.SCAISEND_ADMIN_TOKEN = saved.token;
    }
    expect(noEdge.errs[0]).toMatch(/--edge and --admin-token/);
    expect(seen).toEqual([]);
  });

  it("a refusal of the API prints its reason, exit 1", async () => {
    const io = captureIo();
    expect(await runProvidersCli(["list", "--tenant", "t/1", ...auth()], io)).toBe(1);
    expect(seen).toEqual(["GET /api/admin/tenants/t%2F1/provider-connections"]);
    expect(io.errs).toHaveLength(1);
    expect(io.errs[0]).toMatch(/^scaisend: .* failed: HTTP 404 tenant not found$/);
  });
});
