/**
 * Where benchmark mail ends up.
 *
 *  - `startSmtpSink`: Postfix's smtp-sink (the standard SMTP benchmarking sink) on loopback, with its
 *    `-c` counter ("mesg=N" on stdout) parsed to time the moment the N-th message arrived. Used for
 *    every throughput number, so ScaiSend, Postfix and the ceiling all deliver into the same program.
 *  - `startTimingSink`: a Node SMTP server (smtp-server) that records the arrival time of each message
 *    by its Message-ID header, for time-to-inbox, where per-message arrival times are needed and
 *    smtp-sink has only a counter.
 */
import { SMTPServer } from "smtp-server";
import type { AddressInfo } from "node:net";
import { freePort } from "../../../scripts/lib/wrangler-dev.ts";
import { spawnTracked, type Tracked } from "./procs.ts";

export interface SmtpSink {
  port: number;
  proc: Tracked;
  count(): number;
  /** Resolves with the wall-clock ms (Date.now()) at which the counter reached n. */
  waitForCount(n: number, timeoutMs: number): Promise<number>;
  stop(): Promise<void>;
}

export async function startSmtpSink(bin: string): Promise<SmtpSink> {
  const port = await freePort();
  const args = ["-c", `127.0.0.1:${port}`, "1024"];
  // smtp-sink refuses to run as root without a user to drop to.
  if (process.getuid?.() === 0) args.unshift("-u", "nobody");
  const proc = spawnTracked("smtp-sink", bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let count = 0;
  let waiters: { n: number; resolve: (t: number) => void }[] = [];
  let stderr = "";
  proc.child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  proc.child.stdout!.on("data", (d: Buffer) => {
    const now = Date.now();
    // "sess=… quit=… mesg=N\r" per event; the last mesg= in the chunk is the current count.
    const text = d.toString("latin1");
    let m: RegExpExecArray | null;
    const re = /mesg=(\d+)/g;
    while ((m = re.exec(text))) count = Number(m[1]);
    if (waiters.length) {
      const due = waiters.filter((w) => count >= w.n);
      waiters = waiters.filter((w) => count < w.n);
      for (const w of due) w.resolve(now);
    }
  });
  // Wait until it accepts connections.
  const net = await import("node:net");
  const until = Date.now() + 5_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.end("QUIT\r\n");
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > until || proc.child.exitCode !== null)
      throw new Error(`smtp-sink did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    proc,
    count: () => count,
    waitForCount(n, timeoutMs) {
      if (count >= n) return Promise.resolve(Date.now());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w.resolve !== done);
          reject(new Error(`smtp-sink saw ${count} of ${n} messages within ${timeoutMs} ms`));
        }, timeoutMs);
        const done = (t: number) => {
          clearTimeout(timer);
          resolve(t);
        };
        waiters.push({ n, resolve: done });
      });
    },
    stop: () => proc.stop(3_000),
  };
}

export interface TimingSink {
  port: number;
  /** Message-ID (without <>) → Date.now() when its DATA ended. */
  arrivals: Map<string, number>;
  onArrival?: (messageId: string, at: number) => void;
  close(): Promise<void>;
}

export async function startTimingSink(): Promise<TimingSink> {
  const arrivals = new Map<string, number>();
  const sink: TimingSink = { port: 0, arrivals, close: async () => {} };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    size: 0,
    banner: "bench timing sink",
    onData(stream, _session, callback) {
      let head = "";
      let found: string | null = null;
      stream.on("data", (chunk: Buffer) => {
        if (found !== null || head.length > 64 * 1024) return;
        head += chunk.toString("latin1");
        const m = /^Message-ID:\s*<([^>]+)>/im.exec(head);
        if (m) found = m[1]!.toLowerCase();
      });
      stream.on("end", () => {
        const at = Date.now();
        if (found) {
          arrivals.set(found, at);
          sink.onArrival?.(found, at);
        }
        callback();
      });
    },
  });
  server.on("error", () => {});
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  sink.port = (server.server.address() as AddressInfo).port;
  sink.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return sink;
}
