/**
 * The standard tools the benchmarks compare against: wrk (HTTP load), and Postfix's smtp-sink,
 * smtp-source and postfix itself. Missing ones are installed from apt when running as root (and we
 * say so); otherwise the run stops with the command to install them.
 */
import { spawnSync } from "node:child_process";
import { say } from "./procs.ts";

const TOOLS: { cmd: string; pkg: string }[] = [
  { cmd: "wrk", pkg: "wrk" },
  { cmd: "smtp-sink", pkg: "postfix" },
  { cmd: "smtp-source", pkg: "postfix" },
  { cmd: "postfix", pkg: "postfix" },
  { cmd: "postconf", pkg: "postfix" },
];

const SEARCH_PATH = `${process.env.PATH ?? ""}:/usr/sbin:/sbin:/usr/bin`;

export function which(cmd: string): string | null {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], {
    encoding: "utf8",
    env: { ...process.env, PATH: SEARCH_PATH },
  });
  return r.status === 0 ? r.stdout.trim() : null;
}

export interface ToolPaths {
  wrk: string;
  smtpSink: string;
  smtpSource: string;
  postfix: string;
  postconf: string;
  installed: string[];
}

export function ensureTools(): ToolPaths {
  const missing = [...new Set(TOOLS.filter((t) => !which(t.cmd)).map((t) => t.pkg))];
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) {
      throw new Error(
        `missing tools: ${missing.join(", ")}. Install them with:\n` +
          `  echo "postfix postfix/main_mailer_type select No configuration" | sudo debconf-set-selections\n` +
          `  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing.join(" ")}\n` +
          `(or run npm run bench as root and it installs them)`,
      );
    }
    say(`installing ${missing.join(", ")} with apt-get (needed for the comparison runs) …`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    if (missing.includes("postfix")) {
      // "No configuration": the package must not set up or start a system MTA; we run a private instance.
      spawnSync(
        "sh",
        ["-c", 'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections'],
        {
          env,
          stdio: "inherit",
        },
      );
    }
    const update = spawnSync("apt-get", ["update", "-qq"], { env, stdio: ["ignore", "ignore", "inherit"] });
    if (update.status !== 0)
      throw new Error("apt-get update failed; install " + missing.join(", ") + " by hand");
    const install = spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], {
      env,
      stdio: ["ignore", "ignore", "inherit"],
    });
    if (install.status !== 0) throw new Error(`apt-get install ${missing.join(" ")} failed`);
    say(`installed ${missing.join(", ")}`);
  }
  const path = (cmd: string) => {
    const p = which(cmd);
    if (!p) throw new Error(`${cmd} is still not on PATH after installing`);
    return p;
  };
  return {
    wrk: path("wrk"),
    smtpSink: path("smtp-sink"),
    smtpSource: path("smtp-source"),
    postfix: path("postfix"),
    postconf: path("postconf"),
    installed: missing,
  };
}
