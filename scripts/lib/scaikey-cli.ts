/**
 * `scaisend register` and `scaisend sync --full` (docs/scaikey.md): ScaiSend's side of its ScaiKey
 * integration, run by the operator. Talks to ScaiKey (scripts/lib/scaikey-client.ts) and to this
 * deployment's admin API with the operator token, nothing else.
 *   scaisend register --issuer URL [--initial-access-token-file FILE]
 *     discovery → RFC 7591 client registration (redirect URI <edge>/v3/auth/callback) → webhook
 *     subscription for <edge>/webhooks/scaikey → both stored, sealed, through PUT /api/admin/scaikey.
 *     Re-running changes nothing that is already in place.
 *   scaisend sync --full --token-file FILE [--issuer URL] [--page-size N]
 *     every partner, tenant, group and user from ScaiKey's listings into the mirror (POST
 *     /api/admin/scaikey/sync), then what ScaiKey no longer has is pruned (…/sync/prune). A kind with
 *     a record the edge could not take is not pruned, and the exit status is 1.
 * Progress goes to stderr ("tenants 200/1,350"), the summary to stdout (`--json`: as JSON).
 */
import fs from "node:fs";
import { parseArgs } from "node:util";
import { EVENT_TYPES } from "../../edge/src/services/scaikey-records.ts";
import { AdminApiError, AdminClient, describeError } from "./admin-client.ts";
import { ScaiKeyClient, ScaiKeyError, type Metadata } from "./scaikey-client.ts";

export const SCAIKEY_USAGE = `usage:
  scaisend register --issuer URL [--initial-access-token-file FILE]
  scaisend sync --full --token-file FILE [--issuer URL] [--page-size N]
options: --edge URL (or SCAISEND_EDGE_URL), --admin-token TOKEN (or SCAISEND_ADMIN_TOKEN), --json`;

/** The edge page limit of POST /api/admin/scaikey/sync (surfaces/admin/scaikey.ts). */
const MAX_PAGE = 500;

interface RegistrationView {
  issuer: string | null;
  client_id: string | null;
  has_client_secret: boolean;
  redirect_uri: string | null;
  webhook_id: string | null;
  webhook_url: string | null;
  has_webhook_secret: boolean;
  server_time: number;
}

interface SyncPageView {
  applied: number;
  unchanged: number;
  failed: { id: string; error: string }[];
}

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}
const defaultIo: CliIo = { out: (l) => console.log(l), err: (l) => console.error(l) };

const n = (v: number) => v.toLocaleString("en-US");

function readToken(file: string, flag: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ScaiKeyError(`${flag}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  const token = text.trim();
  if (token === "" || /\s/.test(token)) throw new ScaiKeyError(`${flag}: ${file} must hold one token`);
  return token;
}

async function register(
  admin: AdminClient,
  edge: string,
  issuer: string,
  token: string | null,
  io: CliIo,
): Promise<Record<string, unknown>> {
  const scaikey = new ScaiKeyClient(issuer, token);
  const current = (
    await admin.request<{ data: RegistrationView }>(
      "GET",
      "/api/admin/scaikey",
      undefined,
      "reading the registration",
    )
  ).data;
  const meta = await scaikey.discover();
  io.out(`discovered ${meta.issuer} (registration ${meta.registration_endpoint ?? "none"}, API ${meta.api})`);
  const redirectUri = new URL("/v3/auth/callback", edge).href;
  const webhookUrl = new URL("/webhooks/scaikey", edge).href;
  const sameIssuer = current.issuer === issuer;
  const store = (fields: Record<string, string>) =>
    admin.request("PUT", "/api/admin/scaikey", { issuer, ...fields }, "storing the registration");

  let clientId = current.client_id;
  let clientAction = "kept";
  if (sameIssuer && clientId && current.has_client_secret && current.redirect_uri === redirectUri) {
    io.out(`client ${clientId}: already registered (redirect URI ${redirectUri})`);
  } else {
    const c = await scaikey.register(meta, redirectUri, `ScaiSend (${new URL(edge).host})`);
    // Stored before anything else can fail: ScaiKey shows the secret once.
    await store({ client_id: c.client_id, client_secret: c.client_secret, redirect_uri: redirectUri });
    clientId = c.client_id;
    clientAction = "registered";
    io.out(
      `client ${clientId}: registered (redirect URI ${redirectUri}); its secret is stored sealed at the edge`,
    );
  }

  const existing = (await scaikey.webhooks(meta)).filter((w) => w.url === webhookUrl);
  const ours = existing.find((w) => sameIssuer && w.id === current.webhook_id && current.has_webhook_secret);
  let webhookId: string;
  let webhookAction = "kept";
  if (ours) {
    webhookId = ours.id;
    io.out(`webhook ${webhookId}: already subscribed (${webhookUrl})`);
  } else {
    // A subscription to this URL whose secret the edge does not hold cannot be verified: replaced.
    for (const w of existing) {
      await scaikey.unsubscribe(meta, w.id);
      io.out(`webhook ${w.id}: removed (the edge does not hold its secret)`);
    }
    const w = await scaikey.subscribe(meta, webhookUrl, EVENT_TYPES);
    await store({ webhook_id: w.id, webhook_url: webhookUrl, webhook_secret: w.secret });
    webhookId = w.id;
    webhookAction = "subscribed";
    io.out(
      `webhook ${webhookId}: subscribed to ${EVENT_TYPES.length} event types (${webhookUrl}); its secret is stored sealed`,
    );
  }
  io.out(
    `set on the edge, if not yet: SCAIKEY_ISSUER=${meta.issuer}` +
      (meta.jwks_uri ? ` SCAIKEY_JWKS_URL=${meta.jwks_uri}` : "") +
      ` SCAIKEY_AUDIENCE=<the audience ScaiKey puts in access tokens for ScaiSend>`,
  );
  return {
    issuer: meta.issuer,
    client_id: clientId,
    client: clientAction,
    redirect_uri: redirectUri,
    webhook_id: webhookId,
    webhook: webhookAction,
    webhook_url: webhookUrl,
    jwks_uri: meta.jwks_uri ?? null,
  };
}

interface KindTotals {
  seen: number;
  applied: number;
  unchanged: number;
  failed: { id: string; error: string }[];
  removed: string[];
}

async function fullSync(
  admin: AdminClient,
  issuerFlag: string | undefined,
  token: string,
  pageSize: number,
  io: CliIo,
): Promise<{ summary: Record<string, unknown>; ok: boolean }> {
  const reg = (
    await admin.request<{ data: RegistrationView }>(
      "GET",
      "/api/admin/scaikey",
      undefined,
      "reading the registration",
    )
  ).data;
  const issuer = issuerFlag ?? reg.issuer;
  if (!issuer) throw new ScaiKeyError("no issuer: pass --issuer, or run `scaisend register` first");
  const scaikey = new ScaiKeyClient(issuer, token);
  const meta: Metadata = await scaikey.discover();
  // The edge's clock starts the run: whatever a webhook writes from now on counts as seen.
  const run = reg.server_time;
  const totals = (): KindTotals => ({ seen: 0, applied: 0, unchanged: 0, failed: [], removed: [] });
  const result = { partners: totals(), tenants: totals(), users: totals() };

  /** Pages through one listing, handing each page to `take`; progress as "label seen/total". */
  async function walk(
    path: string,
    label: string,
    take: (records: unknown[]) => Promise<void>,
  ): Promise<number> {
    let cursor: string | null = null;
    let seen = 0;
    do {
      const page = await scaikey.page(meta, path, cursor, pageSize);
      await take(page.data);
      seen += page.data.length;
      io.err(`${label} ${n(seen)}${page.total !== undefined ? `/${n(page.total)}` : ""}`);
      if (page.next_cursor !== null && page.next_cursor === cursor) {
        throw new ScaiKeyError(`listing ${path}: the next cursor repeats the last one`);
      }
      cursor = page.next_cursor;
    } while (cursor !== null);
    return seen;
  }

  async function send(kind: "partners" | "tenants" | "users", records: unknown[], tenantId?: string) {
    for (let i = 0; i < records.length; i += MAX_PAGE) {
      const r = (
        await admin.request<{ data: SyncPageView }>(
          "POST",
          "/api/admin/scaikey/sync",
          {
            run,
            kind,
            ...(tenantId ? { tenant_id: tenantId } : {}),
            records: records.slice(i, i + MAX_PAGE),
          },
          `syncing ${kind}`,
        )
      ).data;
      const t = result[kind];
      t.applied += r.applied;
      t.unchanged += r.unchanged;
      t.failed.push(...r.failed);
    }
  }

  async function prune(kind: "partners" | "tenants" | "users", tenantId?: string) {
    const r = (
      await admin.request<{ data: { removed: string[] } }>(
        "POST",
        "/api/admin/scaikey/sync/prune",
        { run, kind, ...(tenantId ? { tenant_id: tenantId } : {}) },
        `pruning ${kind}`,
      )
    ).data;
    result[kind].removed.push(...r.removed);
  }

  result.partners.seen = await walk("/partners", "partners", (records) => send("partners", records));
  const tenantIds: string[] = [];
  result.tenants.seen = await walk("/tenants", "tenants", async (records) => {
    for (const t of records)
      if (typeof (t as { id?: unknown })?.id === "string") tenantIds.push((t as { id: string }).id);
    await send("tenants", records);
  });
  const failedTenants = new Set(result.tenants.failed.map((f) => f.id));
  for (const [i, tenantId] of tenantIds.entries()) {
    if (failedTenants.has(tenantId)) continue;
    const path = `/tenants/${encodeURIComponent(tenantId)}`;
    // A user's groups come from the group listing (members), so the users' records carry them.
    const groupsOf = new Map<string, string[]>();
    await walk(
      `${path}/groups`,
      `tenant ${i + 1}/${n(tenantIds.length)} ${tenantId} groups`,
      async (records) => {
        for (const g of records as { id?: unknown; members?: unknown }[]) {
          if (typeof g?.id !== "string" || !Array.isArray(g.members)) {
            throw new ScaiKeyError(`listing ${path}/groups: a group needs an id and a members array`);
          }
          for (const m of g.members)
            if (typeof m === "string") groupsOf.set(m, [...(groupsOf.get(m) ?? []), g.id]);
        }
      },
    );
    const failedBefore = result.users.failed.length;
    result.users.seen += await walk(
      `${path}/users`,
      `tenant ${i + 1}/${n(tenantIds.length)} ${tenantId} users`,
      (records) =>
        send(
          "users",
          (records as Record<string, unknown>[]).map((u) => ({
            ...u,
            groups: groupsOf.get(String(u?.id)) ?? [],
          })),
          tenantId,
        ),
    );
    if (result.users.failed.length === failedBefore) await prune("users", tenantId);
  }
  if (result.tenants.failed.length === 0) await prune("tenants");
  if (result.partners.failed.length === 0) await prune("partners");

  const ok = Object.values(result).every((t) => t.failed.length === 0);
  for (const [kind, t] of Object.entries(result)) {
    io.out(
      `${kind}: ${n(t.seen)} at ScaiKey, ${n(t.applied)} applied, ${n(t.unchanged)} unchanged, ` +
        `${n(t.removed.length)} removed${t.failed.length ? `, ${n(t.failed.length)} failed (not pruned)` : ""}`,
    );
    for (const f of t.failed) io.out(`  ${f.id}: ${f.error}`);
  }
  return { summary: { issuer: meta.issuer, run, ...result }, ok };
}

/** Runs `register` or `sync` (argv from the command word on); returns the exit code. */
export async function runScaiKeyCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        edge: { type: "string" },
        "admin-token": { type: "string" },
        issuer: { type: "string" },
        "initial-access-token-file": { type: "string" },
        "token-file": { type: "string" },
        "page-size": { type: "string" },
        full: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean" },
      },
    });
  } catch (err) {
    io.err(`scaisend: ${(err as Error).message}\n${SCAIKEY_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const usage = (why: string) => {
    io.err(`scaisend: ${why}\n${SCAIKEY_USAGE}`);
    return 2;
  };
  if (values.help) {
    io.out(SCAIKEY_USAGE);
    return 0;
  }
  const command = positionals[0];
  if (positionals.length !== 1) return usage(`unexpected arguments: ${positionals.slice(1).join(" ")}`);
  const edge = values.edge ?? process.env.SCAISEND_EDGE_URL;
  const adminToken = values["admin-token"] ?? process.env.SCAISEND_ADMIN_TOKEN;
  if (!edge || !adminToken) {
    return usage("--edge and --admin-token (or SCAISEND_EDGE_URL / SCAISEND_ADMIN_TOKEN) are required");
  }
  const admin = new AdminClient(edge, adminToken);
  const print = (value: unknown) => {
    if (values.json) io.out(JSON.stringify(value, null, 2));
  };
  const quiet: CliIo = values.json ? { out: () => {}, err: io.err } : io;
  try {
    if (command === "register") {
      if (!values.issuer) return usage("register needs --issuer");
      const file = values["initial-access-token-file"];
      const token = file ? readToken(file, "--initial-access-token-file") : null;
      print(await register(admin, edge, values.issuer, token, quiet));
      return 0;
    }
    if (command === "sync") {
      if (!values.full) return usage("sync needs --full (the only kind of sync there is)");
      if (!values["token-file"]) return usage("sync --full needs --token-file (a ScaiKey API token)");
      const pageSize = values["page-size"] === undefined ? 200 : Number(values["page-size"]);
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
        return usage("--page-size must be an integer from 1 to 1000");
      }
      const token = readToken(values["token-file"], "--token-file");
      const { summary, ok } = await fullSync(admin, values.issuer, token, pageSize, quiet);
      print(summary);
      return ok ? 0 : 1;
    }
    return usage(`unknown command "${command}"`);
  } catch (err) {
    if (err instanceof ScaiKeyError || err instanceof AdminApiError) {
      io.err(`scaisend: ${err instanceof AdminApiError ? describeError(err) : err.message}`);
      return 1;
    }
    if (err instanceof Error && err.message.includes("cannot reach")) {
      io.err(`scaisend: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
