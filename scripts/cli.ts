/**
 * The `scaisend` command: bootstrap calls against a running edge with the operator token.
 *   scaisend bootstrap --tenant "Acme" --domain mail.acme.com     tenant + live/test keys + sender domain
 *   scaisend domain show   --tenant tnt_… --id dom_…              DNS records to publish
 *   scaisend domain verify --tenant tnt_… --id dom_…              check them
 *   scaisend domain ed25519 add|remove --tenant tnt_… --id dom_…  dual signing on (or rotate) / off
 *   scaisend key create    --tenant tnt_… --name ci --environment test --scopes mail.send
 *   scaisend tenants list|create|show|suspend|resume               tenants (operator token)
 *   scaisend keys create|list|revoke                               API keys (list/revoke with a tenant key)
 *   scaisend domains list|show|verify|rotate-dkim|delete           sender domains (--tenant)
 *   scaisend secrets reseal                                        re-seal every sealed secret under SECRETS_KEY
 *   scaisend bounce classify < message.eml                         local: classify a bounce or complaint
 *   scaisend logins list|add|password|roles|remove                 dashboard logins (docs/dashboard.md)
 *   scaisend register --issuer URL / sync --full --token-file F     ScaiKey registration and full resync
 * Edge URL and operator token come from --edge / --admin-token or SCAISEND_EDGE_URL / SCAISEND_ADMIN_TOKEN.
 * `--json` prints the API's answer as JSON instead of text. The CLI talks to the edge it is given and
 * nothing else (no telemetry, no update checks); `register` and `sync` also to the ScaiKey issuer
 * they are given (docs/scaikey.md#contract).
 */
import { parseArgs } from "node:util";
import { PERMISSIONS } from "../shared/permissions.ts";
import {
  AdminApiError,
  AdminClient,
  describeError,
  type DomainView,
  type ResealPageView,
} from "./lib/admin-client.ts";

const USAGE = `usage:
  scaisend bootstrap --tenant NAME --domain DOMAIN [--dmarc-policy none|quarantine|reject] [--dkim rsa|dual]
  scaisend domain show --tenant TENANT_ID --id DOMAIN_ID
  scaisend domain verify --tenant TENANT_ID --id DOMAIN_ID
  scaisend domain ed25519 add|remove --tenant TENANT_ID --id DOMAIN_ID   (dual signing; add again rotates)
  scaisend key create --tenant TENANT_ID --name NAME [--environment live|test] [--scopes a,b]
  scaisend tenants list | create --name NAME | show --tenant ID | suspend --tenant ID | resume --tenant ID
  scaisend keys create --tenant TENANT_ID --name NAME [--environment live|test] [--scopes a,b]
  scaisend keys list | revoke --id KEY_ID   (--api-key KEY or SCAISEND_API_KEY: a tenant key with admin.api_keys)
  scaisend domains list|show|verify|rotate-dkim|delete --tenant TENANT_ID [--id DOMAIN_ID]
                  (rotate-dkim --dkim ed25519: the dual-signing domain's Ed25519 key)
  scaisend secrets reseal [--limit N]   (after a SECRETS_KEY rotation; see docs/operations.md)
  scaisend bounce classify < message.eml   (local; VERP_SECRET verifies VERP tokens; see docs/bounces.md)
  scaisend sk-templates list|show|create|version|publish|rollback|archive|unarchive …   (--help for more)
  scaisend register --issuer URL [--initial-access-token-file FILE]   (ScaiKey: OAuth client + sync webhook)
  scaisend sync --full --token-file FILE [--issuer URL] [--page-size N]   (ScaiKey: full resync of the mirror)
  scaisend providers list|add|rotate|default|remove …   (SMS / push / web push connections; --help for more)
  scaisend logins list|add|password|roles|remove …   (dashboard logins; password from a file or stdin; --help)
options: --edge URL (or SCAISEND_EDGE_URL), --admin-token TOKEN (or SCAISEND_ADMIN_TOKEN), --json`;

function printRecords(d: DomainView): void {
  console.log(`\nPublish these DNS records for ${d.domain}, then run "scaisend domain verify":`);
  for (const r of d.dns_records) {
    if (r.status === "removable") continue;
    const value = r.type === "MX" ? `${r.priority ?? 10} ${r.value}` : r.value;
    console.log(`  ${r.type.padEnd(4)} ${r.host}\n       ${value}`);
  }
  const later = d.dns_records.filter((r) => r.status === "pending" || r.status === "retiring");
  for (const r of later)
    console.log(
      r.status === "pending"
        ? `(${r.host} is a new DKIM key: it signs once "domain verify" finds it)`
        : `(${r.host} is a replaced DKIM key: keep it until ${r.remove_after})`,
    );
  for (const r of d.dns_records.filter((x) => x.status === "removable"))
    console.log(`(${r.host} is no longer used and may be deleted from DNS)`);
}

export async function runCli(argv: string[]): Promise<number> {
  if (argv[0] === "sk-templates") {
    // SenderKit templates: its own options (scripts/lib/sk-templates-cli.ts).
    const { runSkTemplatesCli } = await import("./lib/sk-templates-cli.ts");
    return runSkTemplatesCli(argv.slice(1));
  }
  if (argv[0] === "register" || argv[0] === "sync") {
    // ScaiKey (docs/scaikey.md): its own options (scripts/lib/scaikey-cli.ts).
    const { runScaiKeyCli } = await import("./lib/scaikey-cli.ts");
    return runScaiKeyCli(argv);
  }
  if (argv[0] === "logins") {
    // Dashboard logins: the password from a file or stdin only (scripts/lib/logins-cli.ts).
    const { runLoginsCli } = await import("./lib/logins-cli.ts");
    return runLoginsCli(argv.slice(1));
  }
  if (argv[0] === "providers") {
    // Provider connections: credentials from a file or stdin only (scripts/lib/providers-cli.ts).
    const { runProvidersCli } = await import("./lib/providers-cli.ts");
    return runProvidersCli(argv.slice(1));
  }
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      edge: { type: "string" },
      "admin-token": { type: "string" },
      tenant: { type: "string" },
      domain: { type: "string" },
      id: { type: "string" },
      name: { type: "string" },
      environment: { type: "string" },
      scopes: { type: "string" },
      "dmarc-policy": { type: "string" },
      dkim: { type: "string" },
      limit: { type: "string" },
      "api-key": { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  // `domain …` and `key …` are the older spellings of `domains …` and `keys …`.
  const command = positionals
    .join(" ")
    .replace(/^domain\b/, "domains")
    .replace(/^key\b/, "keys")
    .replace(/^tenant\b/, "tenants");
  const json = values.json === true;
  const out = (value: unknown, text: () => void) =>
    json ? console.log(JSON.stringify(value, null, 2)) : text();
  if (values.help || command === "") {
    console.log(USAGE);
    return 0;
  }
  if (command === "bounce classify") {
    // Local: reads one message on stdin, talks to no edge.
    const { bounceClassify, readStdin } = await import("../origin/src/inbound/command.ts");
    return bounceClassify(await readStdin(), process.env, {
      out: (line) => console.log(line),
      err: (line) => console.error(line),
    });
  }
  const edge = values.edge ?? process.env.SCAISEND_EDGE_URL;
  const usesTenantKey = command === "keys list" || command === "keys revoke";
  const token = usesTenantKey
    ? (values["api-key"] ?? process.env.SCAISEND_API_KEY)
    : (values["admin-token"] ?? process.env.SCAISEND_ADMIN_TOKEN);
  if (edge && !token && usesTenantKey) {
    console.error(
      `scaisend: "${command}" needs a tenant API key with admin.api_keys: --api-key or SCAISEND_API_KEY`,
    );
    return 2;
  }
  if (!edge || !token) {
    console.error(
      "scaisend: --edge and --admin-token (or SCAISEND_EDGE_URL / SCAISEND_ADMIN_TOKEN) are required",
    );
    return 2;
  }
  const admin = new AdminClient(edge, token!);
  const need = (name: "tenant" | "domain" | "id" | "name") => {
    const v = values[name];
    if (!v) throw new Error(`--${name} is required for "${command}"`);
    return v;
  };

  try {
    switch (command) {
      case "bootstrap": {
        const tenant = await admin.createTenant(need("tenant"));
        const scopes = [...PERMISSIONS];
        const live = await admin.createApiKey(tenant.id, { name: "live", environment: "live", scopes });
        const test = await admin.createApiKey(tenant.id, { name: "test", environment: "test", scopes });
        const domain = await admin.createDomain(
          tenant.id,
          need("domain"),
          values["dmarc-policy"] ?? "none",
          values.dkim ?? "rsa",
        );
        console.log(
          `tenant   ${tenant.id}\ndomain   ${domain.id} (${domain.domain}, verified: ${domain.verified})`,
        );
        console.log(
          `live key ${live.api_key}\ntest key ${test.api_key}\n(keys are shown once; store them now)`,
        );
        printRecords(domain);
        return 0;
      }
      case "tenants list": {
        const rows = await admin.listTenants();
        out(rows, () => {
          for (const t of rows) console.log(`${t.id}  ${t.status.padEnd(9)}  ${t.name}`);
        });
        return 0;
      }
      case "tenants create": {
        const t = await admin.createTenant(need("name"));
        out(t, () => console.log(t.id));
        return 0;
      }
      case "tenants show": {
        const t = await admin.getTenant(need("tenant"));
        out(t, () => console.log(`${t.id}  ${t.status}  ${t.name}`));
        return 0;
      }
      case "tenants suspend":
      case "tenants resume": {
        const status = command === "tenants suspend" ? "suspended" : "active";
        const t = await admin.setTenantStatus(need("tenant"), status);
        out(t, () => console.log(`${t.id}  ${t.status}`));
        return 0;
      }
      case "domains list": {
        const tenant = need("tenant");
        const all: DomainView[] = [];
        let cursor: string | null = null;
        do {
          const page: Awaited<ReturnType<AdminClient["listDomains"]>> = await admin.listDomains(
            tenant,
            cursor,
          );
          all.push(...page.data);
          cursor = page.next_cursor;
        } while (cursor !== null);
        out(all, () => {
          for (const d of all)
            console.log(
              `${d.id}  ${d.domain}  ${d.verified ? "verified" : "not verified"}` +
                `${d.is_active === false ? ", inactive" : ""}` +
                `${d.dkim_pending_selector ? `, rotation pending (${d.dkim_pending_selector})` : ""}`,
            );
        });
        return 0;
      }
      case "domains show": {
        const d = await admin.getDomain(need("tenant"), need("id"));
        out(d, () => printRecords(d));
        return 0;
      }
      case "domains rotate-dkim": {
        const algorithm = values.dkim;
        if (algorithm !== undefined && algorithm !== "rsa" && algorithm !== "ed25519") {
          throw new Error(
            `--dkim for "domains rotate-dkim" is rsa or ed25519, not ${JSON.stringify(algorithm)}`,
          );
        }
        const d = await admin.rotateDkim(need("tenant"), need("id"), algorithm);
        out(d, () => printRecords(d));
        return 0;
      }
      case "domains delete": {
        await admin.deleteDomain(need("tenant"), need("id"));
        out({ deleted: values.id }, () => console.log(`deleted ${values.id}`));
        return 0;
      }
      case "domains ed25519 add": {
        const d = await admin.addEd25519Key(need("tenant"), need("id"));
        out(d, () => printRecords(d));
        return 0;
      }
      case "domains ed25519 remove": {
        const d = await admin.removeEd25519Key(need("tenant"), need("id"));
        out(d, () => printRecords(d));
        return 0;
      }
      case "domains verify": {
        const r = await admin.verifyDomain(need("tenant"), need("id"));
        out(r, () => {
          console.log(r.verified ? "verified" : "not verified");
          if (r.dkim_switched) console.log(`  signing switched to the new DKIM key (${r.dkim_selector})`);
          for (const c of r.checks ?? []) {
            if (c.ok) continue;
            console.log(`  ${c.host}: ${c.message ?? ""}`);
            if (c.expected) console.log(`    expected: ${c.expected}`);
            if (c.found) console.log(`    found:    ${c.found.length ? c.found.join(" | ") : "(nothing)"}`);
          }
          if (!r.checks) for (const e of r.errors) console.log(`  ${e.record}: ${e.message}`);
        });
        return r.verified ? 0 : 1;
      }
      case "keys list": {
        const r = await admin.listApiKeys();
        out(r.api_keys, () => {
          for (const k of r.api_keys) console.log(`${k.id ?? k.api_key_id}  ${k.name}`);
        });
        return 0;
      }
      case "keys revoke": {
        await admin.revokeApiKey(need("id"));
        out({ revoked: values.id }, () => console.log(`revoked ${values.id}`));
        return 0;
      }
      case "keys create": {
        const environment = values.environment === "test" ? "test" : "live";
        const scopes = (values.scopes ?? "mail.send")
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
        const key = await admin.createApiKey(need("tenant"), { name: need("name"), environment, scopes });
        out(key, () => console.log(`${key.api_key}\n(shown once; scopes: ${key.scopes.join(", ")})`));
        return 0;
      }
      case "secrets reseal": {
        // Walks every domain page by page; safe to run again (current values are left as they are).
        const limit = values.limit === undefined ? undefined : Number(values.limit);
        if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
          throw new Error("--limit must be a positive integer");
        }
        let cursor: string | null = null;
        let keyId = "";
        const totals = { examined: 0, resealed: 0, current: 0 };
        const failed: ResealPageView["failed"] = [];
        do {
          const page: ResealPageView = await admin.resealSecrets(cursor, limit);
          keyId = page.key_id;
          totals.examined += page.examined;
          totals.resealed += page.resealed;
          totals.current += page.already_current;
          failed.push(...page.failed);
          cursor = page.next_cursor;
        } while (cursor !== null);
        out({ key_id: keyId, ...totals, failed }, () => {
          console.log(
            `key id ${keyId}: ${totals.examined} domains and tenants; secrets: ${totals.resealed} re-sealed, ` +
              `${totals.current} already current, ${failed.length} failed`,
          );
          for (const f of failed)
            console.log(
              f.domain_id
                ? `  ${f.domain} (${f.domain_id}, tenant ${f.tenant_id})${f.key ? ` ${f.key} key` : ""}: ${f.error}`
                : `  ${f.tenant_id === null ? "deployment" : `tenant ${f.tenant_id}`} ${f.kind ?? ""} ${f.id ?? ""}: ${f.error}`,
            );
        });
        return failed.length === 0 ? 0 : 1;
      }
      default:
        console.error(`scaisend: unknown command "${command}"\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    // The server said no: print its reason, not a stack trace.
    if (err instanceof AdminApiError) {
      console.error(`scaisend: ${describeError(err)}`);
      return 1;
    }
    throw err;
  }
}
