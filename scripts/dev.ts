/**
 * `npm start`: the whole ScaiSend stack on this machine.
 *   edge    the Worker in workerd through Miniflare (local D1/R2/Durable Objects), reloaded when edge/,
 *           shared/ or wrangler.toml change; state in .dev/edge in wrangler's --persist-to layout
 *           (scripts/lib/miniflare-dev.ts). SCAISEND_EDGE=wrangler runs it under `wrangler dev --local`
 *           instead, linking the origin through wrangler's proxy, whose address survives reloads
 *           (docs/operations.md, "Under wrangler dev").
 *   origin  the delivery node in dev mode: every message goes to the built-in dev inbox
 * First run bootstraps a tenant, a live and a test API key and the sender domain example.com
 * (in dev mode a new domain counts as verified). Then it sends a first email, waits for it to be
 * delivered into the dev inbox, and prints what you need. Ctrl-C stops everything.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { AdminClient, type ApiKeyView, type DomainView } from "./lib/admin-client.ts";
import { startDevEdge } from "./lib/miniflare-dev.ts";
import { freePort, REPO_ROOT, startEdge, stopGroup } from "./lib/wrangler-dev.ts";

const DEV_DIR = path.join(REPO_ROOT, ".dev");
const SENDER_DOMAIN = "example.com";

interface DevSecrets {
  ORIGIN_TOKEN: string;
  ADMIN_TOKEN: string;
  SECRETS_KEY: string;
  TRACKING_SECRET: string;
  VERP_SECRET: string;
}

interface DevBootstrap {
  tenantId: string;
  liveKey: ApiKeyView;
  testKey: ApiKeyView;
  domain: DomainView;
  /** The first dashboard login (docs/dashboard.md), made on the first start that has none. */
  dashboard?: { email: string; password: string };
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as T;
  } catch {
    return null;
  }
}

function writeJson(file: string, value: unknown): void {
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 });
}

function devSecrets(): DevSecrets {
  const file = path.join(DEV_DIR, "secrets.json");
  const existing = readJson<DevSecrets>(file);
  if (existing) return existing;
  const token = () => randomBytes(24).toString("hex");
  const secrets: DevSecrets = {
    ORIGIN_TOKEN: token(),
    ADMIN_TOKEN: token(),
    SECRETS_KEY: randomBytes(32).toString("base64"),
    TRACKING_SECRET: token(),
    VERP_SECRET: token(),
  };
  writeJson(file, secrets);
  return secrets;
}

async function portOr(preferred: number): Promise<number> {
  const free = await new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(preferred, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
  return free ? preferred : freePort();
}

async function bootstrap(admin: AdminClient): Promise<DevBootstrap> {
  const file = path.join(DEV_DIR, "bootstrap.json");
  const saved = readJson<DevBootstrap>(file);
  if (saved) {
    try {
      await admin.getDomain(saved.tenantId, saved.domain.id);
      return saved;
    } catch {
      // The local database was reset; bootstrap again.
    }
  }
  const tenant = await admin.createTenant("Local development");
  const allScopes = [
    "mail.send",
    "mail.schedule",
    "mail.cancel",
    "domains.read",
    "domains.write",
    "stats.read",
    "templates.read",
    "templates.write",
  ];
  const liveKey = await admin.createApiKey(tenant.id, {
    name: "dev live",
    environment: "live",
    scopes: allScopes,
  });
  const testKey = await admin.createApiKey(tenant.id, {
    name: "dev test",
    environment: "test",
    scopes: allScopes,
  });
  const domain = await admin.createDomain(tenant.id, SENDER_DOMAIN);
  const result: DevBootstrap = { tenantId: tenant.id, liveKey, testKey, domain };
  writeJson(file, result);
  return result;
}

/** A dashboard login with the admin role, once: its password is random and kept beside the dev keys. */
async function dashboardLogin(
  admin: AdminClient,
  boot: DevBootstrap,
): Promise<{ email: string; password: string }> {
  if (boot.dashboard) return boot.dashboard;
  const login = { email: "dev@scaisend.localhost", password: randomBytes(12).toString("base64url") };
  await admin.request(
    "POST",
    `/api/admin/tenants/${boot.tenantId}/logins`,
    { ...login, roles: ["admin"] },
    "add login",
  );
  boot.dashboard = login;
  writeJson(path.join(DEV_DIR, "bootstrap.json"), boot);
  return login;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function main(): Promise<void> {
  fs.mkdirSync(DEV_DIR, { recursive: true });
  const secrets = devSecrets();
  const children: { stop: () => Promise<void> }[] = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log("\nStopping ScaiSend …");
    for (const c of children.reverse()) await c.stop().catch(() => undefined);
    process.exit(code);
  };
  process.on("SIGINT", () => void stopAll(0));
  process.on("SIGTERM", () => void stopAll(0));

  try {
    const useWrangler = process.env.SCAISEND_EDGE === "wrangler";
    const edgeOptions = {
      persistDir: path.join(DEV_DIR, "edge"),
      port: await portOr(Number(process.env.SCAISEND_EDGE_PORT ?? 8787)),
      vars: {
        ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
        ADMIN_TOKEN: secrets.ADMIN_TOKEN,
        SECRETS_KEY: secrets.SECRETS_KEY,
        TRACKING_SECRET: secrets.TRACKING_SECRET,
        DEV_MODE: "true",
      },
    };
    console.log(
      `Starting the edge (${useWrangler ? "wrangler dev --local" : "workerd via Miniflare, reloads on edits"}) …`,
    );
    const edge: { url: string; stop(): Promise<void> } = useWrangler
      ? await startEdge(edgeOptions)
      : await startDevEdge({ ...edgeOptions, log: (line) => console.error(line) });
    children.push(edge);

    const admin = new AdminClient(edge.url, secrets.ADMIN_TOKEN);
    const boot = await bootstrap(admin);
    const dashboard = await dashboardLogin(admin, boot);
    const dkimRecord = boot.domain.dns_records.find((r) => r.purpose === "dkim")!;

    console.log("Starting the origin (dev inbox mode) …");
    const inboxHttpPort = await portOr(Number(process.env.SCAISEND_INBOX_PORT ?? 8025));
    const originHttpPort = await portOr(9464);
    // SMTP submission (docs/smtp-submission.md), loopback only: without TLS it takes AUTH in plaintext.
    const submissionPort = await portOr(Number(process.env.SCAISEND_SUBMISSION_PORT ?? 2587));
    const origin: ChildProcess = spawn(
      path.join(REPO_ROOT, "node_modules", ".bin", "tsx"),
      // The young generation the image gives the origin (origin/Dockerfile; docs/operations.md, "With
      // systemd"): tsx hands node flags before the script to the node process that runs it.
      ["--max-semi-space-size=32", path.join(REPO_ROOT, "origin", "src", "main.ts")],
      {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          // Miniflare: the Worker's own socket, on the same port across reloads (the link reconnects by
          // itself after one). SCAISEND_EDGE=wrangler: wrangler's proxy, whose port stays when wrangler
          // reloads the Worker on a new one (docs/operations.md, "Under wrangler dev").
          EDGE_URL: edge.url,
          ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
          VERP_SECRET: secrets.VERP_SECRET,
          NODE_ID: "dev-origin",
          DEV_INBOX: "true",
          // The dev inbox is a smarthost (never screened); this lets a DNS_SERVERS override send
          // to MX hosts on this machine too.
          ALLOW_PRIVATE_MX: "true",
          DEV_INBOX_SMTP_PORT: String(await portOr(2525)),
          DEV_INBOX_HTTP_PORT: String(inboxHttpPort),
          DEV_DKIM_RECORDS: JSON.stringify({ [dkimRecord.host]: dkimRecord.value }),
          HTTP_PORT: String(originHttpPort),
          SUBMISSION_HOST: "127.0.0.1",
          SUBMISSION_PORT: String(submissionPort),
          LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
        },
        stdio: ["ignore", "inherit", "inherit"],
        detached: true,
      },
    );
    children.push({ stop: () => stopGroup(origin, 35_000) });
    origin.once("exit", (code) => {
      if (!stopping) {
        console.error(`The origin exited (code ${code}); stopping.`);
        void stopAll(1);
      }
    });
    await waitFor("the origin to connect", 30_000, async () => {
      const res = await fetch(`http://127.0.0.1:${originHttpPort}/readyz`);
      return res.ok ? true : undefined;
    });

    const inboxUrl = `http://127.0.0.1:${inboxHttpPort}`;
    const firstSend = {
      personalizations: [{ to: [{ email: "you@example.org", name: "You" }] }],
      from: { email: `hello@${SENDER_DOMAIN}`, name: "ScaiSend" },
      subject: "Your first ScaiSend email",
      content: [
        { type: "text/plain", value: "It works: accepted at the edge, delivered by your origin." },
        {
          type: "text/html",
          value: "<p>It works: accepted at the edge, <b>delivered by your origin</b>.</p>",
        },
      ],
    };
    const started = Date.now();
    const res = await fetch(`${edge.url}/v3/mail/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${boot.liveKey.api_key}`, "content-type": "application/json" },
      body: JSON.stringify(firstSend),
    });
    const accepted = (await res.json()) as { message_id?: string };
    if (res.status !== 202 || !accepted.message_id)
      throw new Error(`first send failed: ${res.status} ${JSON.stringify(accepted)}`);
    const messageId = accepted.message_id;
    const delivered = await waitFor("the first email to be delivered", 30_000, async () => {
      const r = await fetch(`${edge.url}/v3/messages/${messageId}`, {
        headers: { authorization: `Bearer ${boot.liveKey.api_key}` },
      });
      const m = (await r.json()) as { status: string; events: { event_type: string }[] };
      return m.status === "delivered" ? m : undefined;
    });
    const tookMs = Date.now() - started;
    const inboxList = (await (await fetch(`${inboxUrl}/api/messages`)).json()) as {
      messages: { subject: string; dkim: { result: string } }[];
    };
    const inboxCopy = inboxList.messages.find((m) => m.subject === firstSend.subject);

    const curl = [
      `curl -i ${edge.url}/v3/mail/send \\`,
      `  -H "Authorization: Bearer ${boot.liveKey.api_key}" \\`,
      `  -H "Content-Type: application/json" \\`,
      `  -d '{"personalizations":[{"to":[{"email":"friend@example.org"}]}],"from":{"email":"hello@${SENDER_DOMAIN}"},"subject":"Hello","content":[{"type":"text/plain","value":"Hi from ScaiSend"}]}'`,
    ].join("\n");

    console.log(`
ScaiSend is running.

  Edge (SendGrid-compatible API)  ${edge.url}
  Dev inbox                       ${inboxUrl}
  Dashboard                       ${edge.url}/app   (sign in: ${dashboard.email} / ${dashboard.password})
  Origin metrics                  http://127.0.0.1:${originHttpPort}/metrics

  Live API key   ${boot.liveKey.api_key}
  Test API key   ${boot.testKey.api_key}   (always sandbox: validated, never delivered)
  Sender domain  ${SENDER_DOMAIN}  (dev mode: counts as verified without DNS)
  SMTP relay     127.0.0.1:${submissionPort}, user "apikey", password the API key:
    swaks --server 127.0.0.1 --port ${submissionPort} --auth PLAIN --auth-user apikey --auth-password ${boot.liveKey.api_key} --from hello@${SENDER_DOMAIN} --to friend@example.org

First send: ${messageId} → ${delivered.status} in ${tookMs} ms (${delivered.events.map((e) => e.event_type).join(" → ")}), DKIM in the inbox: ${inboxCopy?.dkim.result ?? "not found"}

Send another one:
${curl}

See its status:
  curl ${edge.url}/v3/messages -H "Authorization: Bearer ${boot.liveKey.api_key}"

Press Ctrl-C to stop.`);
  } catch (err) {
    console.error(`\nnpm start failed: ${(err as Error).message}`);
    await stopAll(1);
  }
}

await main();
