/**
 * A private Postfix instance configured as a plain relay to the benchmark sink: its own
 * config_directory and queue_directory in a temp dir, `postfix -c DIR start` / `stop`, and the temp
 * dir removed afterwards. The system Postfix (if any) is not touched.
 *
 * What is set, and why (everything else is Postfix's default, including the delivery concurrency:
 * initial_destination_concurrency 5, default_destination_concurrency_limit 20, connection cache on
 * demand):
 *   master.cf            only the daemons a relay needs; smtpd on 127.0.0.1:<port>; chroot off (the
 *                        queue is in a temp dir, not /var/spool/postfix)
 *   inet_interfaces      loopback-only; inet_protocols ipv4 — nothing leaves 127.0.0.1
 *   relayhost            [127.0.0.1]:<sink port> — every message goes to the sink, no DNS
 *   mydestination        empty, local_transport = error — no local delivery
 *   mynetworks           127.0.0.0/8 — smtp-source on loopback may relay
 *   smtp(d)_tls_security_level none — the sink has no TLS, and neither does the origin's path here
 *   maillog_file         a file in the temp dir (no syslog on these machines)
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "../../../scripts/lib/wrangler-dev.ts";
import { onCleanup, say, sleep } from "./procs.ts";

export interface PostfixRelay {
  port: number;
  dir: string;
  masterPid: number;
  logTail(): string;
  stop(): Promise<void>;
}

const MASTER_CF = (port: number) => `# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:${port} inet n    -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

const MAIN_CF = (dir: string, sinkPort: number) => `compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = relay.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:5.1.1 local delivery is disabled
relayhost = [127.0.0.1]:${sinkPort}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
`;

export async function startPostfixRelay(postfixBin: string, sinkPort: number): Promise<PostfixRelay> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-bench-postfix-"));
  // The postfix user must reach the queue inside; mkdtemp makes a 0700 dir.
  fs.chmodSync(dir, 0o755);
  const removeDir = onCleanup("postfix temp dir", () => fs.rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  fs.writeFileSync(path.join(dir, "main.cf"), MAIN_CF(dir, sinkPort));
  fs.writeFileSync(path.join(dir, "master.cf"), MASTER_CF(port));
  for (const sub of ["queue", "data"]) fs.mkdirSync(path.join(dir, sub), { mode: 0o755 });
  // data_directory belongs to mail_owner (master.lock lives there); set-permissions fixes the queue.
  const owner = spawnSync("id", ["-u", "postfix"], { encoding: "utf8" });
  const group = spawnSync("id", ["-g", "postfix"], { encoding: "utf8" });
  if (owner.status === 0) fs.chownSync(path.join(dir, "data"), Number(owner.stdout), Number(group.stdout));
  const logFile = path.join(dir, "maillog");
  const logTail = () =>
    fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").split("\n").slice(-15).join("\n") : "";
  const pidFile = path.join(dir, "queue", "pid", "master.pid");
  const readPid = () => {
    try {
      return Number(fs.readFileSync(pidFile, "utf8").trim()) || 0;
    } catch {
      return 0;
    }
  };

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const pid = readPid();
    spawnSync(postfixBin, ["-c", dir, "stop"], { stdio: "ignore" });
    const until = Date.now() + 10_000;
    while (pid && alive(pid) && Date.now() < until) await sleep(100);
    if (pid && alive(pid)) {
      say(`postfix master ${pid} did not stop; killing it`);
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await removeDir();
  };
  const removeStop = onCleanup("postfix relay", stop);

  const setPerms = spawnSync(postfixBin, ["-c", dir, "set-permissions"], { encoding: "utf8" });
  const start = spawnSync(postfixBin, ["-c", dir, "start"], { encoding: "utf8" });
  if (start.status !== 0) {
    const tail = logTail();
    await removeStop();
    throw new Error(
      `postfix -c ${dir} start failed (postfix prints errors only to a terminal; its log):\n${setPerms.stderr}${start.stdout}${start.stderr}\n${tail}`,
    );
  }
  // Wait for smtpd to answer.
  const net = await import("node:net");
  const until = Date.now() + 10_000;
  for (;;) {
    const banner = await new Promise<string>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("data", (d) => {
        s.end("QUIT\r\n");
        resolve(d.toString());
      });
      s.once("error", () => resolve(""));
    });
    if (banner.startsWith("220")) break;
    if (Date.now() > until) {
      const tail = logTail();
      await removeStop();
      throw new Error(`postfix relay did not answer on 127.0.0.1:${port}\n${tail}`);
    }
    await sleep(100);
  }
  return { port, dir, masterPid: readPid(), logTail, stop: removeStop };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
