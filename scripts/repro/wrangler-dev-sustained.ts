/**
 * Reproduction: `wrangler dev --local` does not survive sustained delivery (docs/operations.md,
 * "Running the stack locally"). Bounded and on loopback only:
 *
 *   tsx scripts/repro/wrangler-dev-sustained.ts [wrangler|wrangler-proxy|miniflare] [requests=5]
 *
 * Starts the edge (wrangler dev, or npm start's Miniflare runner for comparison) on fresh state, an
 * origin in dev-inbox mode linked to the Worker's own socket (`wrangler-proxy`: to wrangler's proxy), then POSTs `requests` × 1,000
 * personalizations back to back with Node's fetch (one keep-alive connection, as most clients do),
 * waits until every message is delivered (at most 150 s), and reports each POST, how many were
 * delivered, the link drops (the origin's "link closed; reconnecting", with their close codes) and
 * whether the edge process is still alive. Every process it starts is stopped by pid; at most ~6 minutes.
 *
 * Seen on 2026-12-02 (wrangler 4.124.0, loaded 2-core machine), twice: the third POST, sent while the
 * hub delivered the first two, got no answer (reset after 18 s in one run; no answer within the 90 s
 * client timeout in the other); wrangler's ProxyWorker reported "Error inside ProxyWorker … Network
 * connection lost" (workerd: "kj/async-io-unix.c++: disconnected: ::read(fd, buffer, maxBytes):
 * Connection reset by peer") and the dev session exited: the next POST got "other side closed", the
 * link dropped (7 reconnect attempts), /healthz no longer answered. Under Miniflare the same kind of
 * request waits until the hub's backlog is out, and the session lives on.
 *
 * Seen on 2026-12-04 (same wrangler, after the hub's pause between busy slices of frames and with
 * wrangler's local trace collector off or on): 10 × 1,000 with every POST answered, all delivered,
 * no link drop, the session alive, on a quiet machine and with two CPU-bound processes beside it.
 * Editing the Worker's sources while it runs makes wrangler reload it on another port, and the
 * origin, linked to the old one, drops its link and keeps failing to reconnect.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AdminClient } from "../lib/admin-client.ts";
import { startDevEdge } from "../lib/miniflare-dev.ts";
import { freePort, REPO_ROOT, startEdge, stopGroup } from "../lib/wrangler-dev.ts";

/** `wrangler-proxy`: wrangler dev, with the origin linked through wrangler's proxy (as SCAISEND_EDGE=wrangler npm start links it). */
const mode = process.argv[2] ?? "wrangler";
const runtime = mode === "miniflare" ? "miniflare" : "wrangler";
const requests = Math.min(10, Math.max(1, Number(process.argv[3] ?? 5)));
const HARD_LIMIT_MS = 6 * 60_000;

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-repro-"));
const secrets = {
  ORIGIN_TOKEN: randomBytes(24).toString("hex"),
  ADMIN_TOKEN: randomBytes(24).toString("hex"),
  SECRETS_KEY: randomBytes(32).toString("base64"),
  TRACKING_SECRET: randomBytes(24).toString("hex"),
};
const stops: (() => Promise<void>)[] = [];
const stopAll = async () => {
  for (const s of stops.reverse()) await s().catch(() => undefined);
  fs.rmSync(workDir, { recursive: true, force: true });
};
const say = (m: string) => process.stderr.write(`repro: ${m}\n`);
setTimeout(() => {
  say("time limit reached");
  void stopAll().finally(() => process.exit(2));
}, HARD_LIMIT_MS).unref();
process.on("SIGINT", () => void stopAll().finally(() => process.exit(130)));

try {
  const vars = { ...secrets, DEV_MODE: "true" };
  let edgeUrl: string;
  let linkUrl: string;
  let edgeAlive: () => boolean;
  if (runtime === "wrangler") {
    const e = await startEdge({ persistDir: path.join(workDir, "edge"), vars });
    stops.push(e.stop);
    [edgeUrl, linkUrl] = [e.url, mode === "wrangler-proxy" ? e.url : e.workerUrl];
    edgeAlive = () => {
      try {
        process.kill(e.pid, 0);
        return true;
      } catch {
        return false;
      }
    };
  } else {
    const e = await startDevEdge({ persistDir: path.join(workDir, "edge"), vars, watch: false });
    stops.push(e.stop);
    [edgeUrl, linkUrl] = [e.url, e.workerUrl];
    edgeAlive = () => true;
  }
  say(`${mode} edge at ${edgeUrl} (link to ${linkUrl})`);
  const admin = new AdminClient(edgeUrl, secrets.ADMIN_TOKEN);
  const tenant = await admin.createTenant("repro");
  const key = await admin.createApiKey(tenant.id, {
    name: "repro",
    environment: "live",
    scopes: ["mail.send", "stats.read"],
  });
  const domain = await admin.createDomain(tenant.id, "example.com");
  const dkim = domain.dns_records.find((r) => r.purpose === "dkim")!;

  const originLog = path.join(workDir, "origin.log");
  const out = fs.openSync(originLog, "w");
  const httpPort = await freePort();
  const origin = spawn(path.join(REPO_ROOT, "node_modules", ".bin", "tsx"), ["origin/src/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      EDGE_URL: linkUrl,
      ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
      VERP_SECRET: randomBytes(24).toString("hex"),
      NODE_ID: `repro-${process.pid}`,
      DEV_INBOX: "true",
      ALLOW_PRIVATE_MX: "true",
      DEV_INBOX_SMTP_PORT: String(await freePort()),
      DEV_INBOX_HTTP_PORT: String(await freePort()),
      DEV_DKIM_RECORDS: JSON.stringify({ [dkim.host]: dkim.value }),
      HTTP_HOST: "127.0.0.1",
      HTTP_PORT: String(httpPort),
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", out, out],
    detached: true,
  });
  fs.closeSync(out);
  stops.unshift(() => stopGroup(origin, 15_000));
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://127.0.0.1:${httpPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (i > 300) throw new Error(`the origin did not link up:\n${fs.readFileSync(originLog, "utf8")}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  const html = `<p>${"Sustained delivery through the local edge. ".repeat(90)}</p>`;
  for (let r = 0; r < requests; r++) {
    const body = JSON.stringify({
      personalizations: Array.from({ length: 1000 }, (_, i) => ({
        to: [{ email: `user${r * 1000 + i}@example.org` }],
      })),
      from: { email: "hello@example.com" },
      subject: "repro",
      content: [{ type: "text/html", value: html }],
    });
    const t0 = performance.now();
    try {
      const res = await fetch(`${edgeUrl}/v3/mail/send`, {
        method: "POST",
        headers: { authorization: `Bearer ${key.api_key}`, "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(90_000),
      });
      const text = await res.text();
      say(
        `POST ${r + 1}: ${res.status} after ${Math.round(performance.now() - t0)} ms ${res.status === 202 ? "" : text.slice(0, 200)}`,
      );
    } catch (err) {
      say(
        `POST ${r + 1}: failed after ${Math.round(performance.now() - t0)} ms: ${String((err as Error).cause ?? err)}`,
      );
    }
  }
  // Let the link carry what was accepted, until all of it is delivered or 150 s have passed.
  const stats = async (): Promise<{ processed: number; delivered: number } | string> => {
    const day = new Date().toISOString().slice(0, 10);
    try {
      const res = await fetch(`${edgeUrl}/v3/stats?start_date=${day}`, {
        headers: { authorization: `Bearer ${key.api_key}` },
      });
      const body = (await res.json()) as { stats?: { metrics: { processed: number; delivered: number } }[] };
      const m = body.stats?.[0]?.metrics;
      return m ? { processed: m.processed, delivered: m.delivered } : JSON.stringify(body).slice(0, 200);
    } catch (err) {
      return String(err);
    }
  };
  const sent = requests * 1000;
  const waitFrom = performance.now();
  let last = await stats();
  while (performance.now() - waitFrom < 150_000 && (typeof last === "string" || last.delivered < sent)) {
    await new Promise((r) => setTimeout(r, 2_000));
    last = await stats();
  }
  say(
    typeof last === "string"
      ? `stats: ${last}`
      : `delivered ${last.delivered} of ${sent} (processed ${last.processed}), ${Math.round((performance.now() - waitFrom) / 1000)} s after the last POST`,
  );
  const log = fs.readFileSync(originLog, "utf8");
  const drops = log.split("\n").filter((l) => l.includes('"msg":"link closed; reconnecting"'));
  say(`link drops: ${drops.length}`);
  // Why each one closed: the close code, and the link's error before it, if any.
  for (const l of log.split("\n").filter((l) => /"msg":"link (closed; reconnecting|error)"/.test(l))) {
    say(`  ${l.slice(0, 300)}`);
  }
  say(`edge process alive: ${edgeAlive()}`);
  say(
    `edge answers /healthz: ${await fetch(`${edgeUrl}/healthz`).then(
      (r) => r.ok,
      () => false,
    )}`,
  );
} catch (err) {
  say(`failed: ${(err as Error).message}`);
} finally {
  await stopAll();
}
