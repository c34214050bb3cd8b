/**
 * CPU per message of two parts of the origin's main thread, each alone in this process, measured
 * with process.cpuUsage() (CPU time, not the CPU profiler's wall-clock samples):
 *  - the SMTP transport (origin/src/smtp/transport.ts): the DKIM-signed benchmark message delivered
 *    to Postfix's smtp-sink on loopback, 5 at a time over reused sessions, as the origin does;
 *  - the outcome journal (origin/src/journal/outcome-journal.ts): one result appended and
 *    acknowledged per message, fdatasync every 50 ms (JOURNAL_FSYNC_MS's default).
 * Why: in the origin's CPU profile under `--only=origin`, socket writes look like a third of the
 * main thread's busy time, but a sample taken while the thread waits in write(2) on a loaded 2-core
 * machine (the receiver woken, the thread preempted) counts as busy there. This says what the
 * SMTP layer really costs per message, so work on it can be weighed against the rest.
 *
 *   npx tsx test/bench/origin-parts.ts [--messages=6000] [--rounds=3]
 * Needs smtp-sink (`apt-get install postfix`, as `npm run bench` says). Prints one JSON line per
 * round and part; the sink it starts is stopped by pid at the end.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { buildMime } from "../../origin/src/compose/build-mime.ts";
import { signDkim } from "../../origin/src/compose/dkim.ts";
import { OutcomeJournal, type ResultFrame } from "../../origin/src/journal/outcome-journal.ts";
import { createSmtpTransport } from "../../origin/src/smtp/transport.ts";
import { benchHtml, buildJobs, rsaKeyPem, SENDER_DOMAIN } from "./lib/mail.ts";
import { runCleanups } from "./lib/procs.ts";
import { startSmtpSink } from "./lib/sink.ts";

const arg = (name: string, dflt: number) => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.slice(name.length + 3)) : dflt;
};
const messages = arg("messages", 6000);
const rounds = arg("rounds", 3);
const SESSIONS = 5;

const perThousand = (c: NodeJS.CpuUsage, n: number) => ({
  userMsPer1000: Math.round((c.user / n) * 10) / 10,
  sysMsPer1000: Math.round((c.system / n) * 10) / 10,
  totalMsPer1000: Math.round(((c.user + c.system) / n) * 10) / 10,
});
const load = () => os.loadavg()[0]!.toFixed(2);

async function main(): Promise<void> {
  const rsa = rsaKeyPem();
  const job = buildJobs(1, benchHtml(), rsa)[0]!;
  const raw = await signDkim(await buildMime(job), {
    domain: SENDER_DOMAIN,
    selector: "scaisend",
    privateKeyPem: rsa,
  });
  const sink = await startSmtpSink("/usr/sbin/smtp-sink");
  const transport = createSmtpTransport({
    heloName: "origin.bench",
    connectTimeoutMs: 5_000,
    maxConnectionsPerHost: SESSIONS,
  });
  const hosts = [{ exchange: "mx.bench.test", preference: 10, addresses: ["127.0.0.1"] }];
  const deliverMany = async (n: number) => {
    let next = 0;
    const session = async () => {
      while (next++ < n) {
        const [o] = await transport.deliver({
          hosts,
          port: sink.port,
          envelopeFrom: `bounces@${SENDER_DOMAIN}`,
          recipients: ["someone@inbox.bench.test"],
          raw,
        });
        if (o?.status !== "delivered") throw new Error(`not delivered: ${JSON.stringify(o)}`);
      }
    };
    await Promise.all(Array.from({ length: SESSIONS }, session));
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "origin-parts-"));
  const journal = OutcomeJournal.open({ dir, nodeId: "bench", fsyncIntervalMs: 50, retainMs: 3_600_000 });
  let seq = 0;
  const journalMany = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const id = `job-${++seq}`;
      const frame: ResultFrame = {
        type: "result",
        jobId: id,
        messageId: `msg-${seq}`,
        attempt: 1,
        recipients: [
          {
            recipient: "someone@inbox.bench.test",
            status: "delivered",
            smtpCode: 250,
            enhancedCode: "2.0.0",
            response: "250 2.0.0 Ok: queued as 4Xyz",
            mxHost: "mx.bench.test",
            tls: false,
            latencyMs: 3,
          },
        ],
      };
      journal.append(frame, 0);
      journal.acknowledged([id]);
      // The node yields between results; let the fsync timer run as it would.
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
  };
  try {
    await deliverMany(1_000); // warm: sessions open, the hot code compiled
    await journalMany(1_000);
    for (let r = 1; r <= rounds; r++) {
      const before = load();
      let c0 = process.cpuUsage();
      let t0 = Date.now();
      await deliverMany(messages);
      const smtp = process.cpuUsage(c0);
      const smtpSeconds = (Date.now() - t0) / 1000;
      console.log(
        JSON.stringify({
          round: r,
          part: "smtp transport → smtp-sink",
          messages,
          ...perThousand(smtp, messages),
          messagesPerSec: Math.round(messages / smtpSeconds),
          load: before,
        }),
      );
      c0 = process.cpuUsage();
      t0 = Date.now();
      await journalMany(messages);
      console.log(
        JSON.stringify({
          round: r,
          part: "outcome journal append + ack",
          messages,
          ...perThousand(process.cpuUsage(c0), messages),
          load: load(),
        }),
      );
    }
  } finally {
    await journal.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await transport.close();
    await sink.stop();
  }
}

main().then(
  () => runCleanups(),
  async (err: unknown) => {
    console.error(err);
    await runCleanups();
    process.exitCode = 1;
  },
);
