/** Runs wrk with --latency (optionally a POST body via a Lua script) and parses its report. */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { onCleanup } from "./procs.ts";

export interface WrkResult {
  url: string;
  method: string;
  threads: number;
  connections: number;
  durationS: number;
  requests: number;
  requestsPerSec: number;
  non2xx: number;
  socketErrors: string | null;
  /** Latency percentiles in ms, from wrk's --latency distribution. */
  latencyMs: { p50: number; p75: number; p90: number; p99: number; max: number };
  raw: string;
}

export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  durationS: number;
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  /** Folder for the Lua script and body file. */
  workDir: string;
}

const toMs = (value: string, unit: string): number => {
  const v = Number(value);
  switch (unit) {
    case "us":
      return v / 1000;
    case "ms":
      return v;
    case "s":
      return v * 1000;
    case "m":
      return v * 60_000;
    default:
      return NaN;
  }
};

export async function runWrk(bin: string, o: WrkOptions): Promise<WrkResult> {
  const method = o.method ?? "GET";
  const args = [
    "-t",
    String(o.threads),
    "-c",
    String(o.connections),
    "-d",
    `${o.durationS}s`,
    "--latency",
    "--timeout",
    "10s",
  ];
  if (method !== "GET" || o.headers || o.body) {
    const bodyFile = path.join(o.workDir, `wrk-body-${Date.now()}.json`);
    fs.writeFileSync(bodyFile, o.body ?? "");
    const script = path.join(o.workDir, `wrk-${Date.now()}.lua`);
    const headers = Object.entries(o.headers ?? {})
      .map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
      .join("\n");
    fs.writeFileSync(
      script,
      `wrk.method = "${method}"\nlocal f = io.open(${JSON.stringify(bodyFile)}, "rb")\nwrk.body = f:read("*a")\nf:close()\n${headers}\n`,
    );
    args.push("-s", script);
  }
  args.push(o.url);
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  const remove = onCleanup("wrk", () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // done
    }
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  await remove();
  if (code !== 0) throw new Error(`wrk exited with ${code}: ${err}${out}`);
  return parseWrk(out, o, method);
}

export function parseWrk(out: string, o: WrkOptions, method: string): WrkResult {
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const maxM = /^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)/m.exec(out);
  const reqs = /(\d+) requests in/.exec(out);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const sock = /Socket errors:([^\n]+)/.exec(out);
  return {
    url: o.url,
    method,
    threads: o.threads,
    connections: o.connections,
    durationS: o.durationS,
    requests: reqs ? Number(reqs[1]) : NaN,
    requestsPerSec: rps ? Number(rps[1]) : NaN,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: sock ? sock[1]!.trim() : null,
    latencyMs: {
      p50: pct("50"),
      p75: pct("75"),
      p90: pct("90"),
      p99: pct("99"),
      max: maxM ? toMs(maxM[1]!, maxM[2]!) : NaN,
    },
    raw: out,
  };
}
