/**
 * The `scaisend` command: bootstrap calls against a running edge with the operator token.
 *   scaisend bootstrap --tenant "Acme" --domain mail.acme.com     tenant + live/test keys + sender domain
 *   scaisend domain show   --tenant tnt_… --id dom_…              DNS records to publish
 *   scaisend domain verify --tenant tnt_… --id dom_…              check them
 *   scaisend domain ed25519 add|remove --tenant tnt_… --id dom_…  dual signing on (or rotate) / off
 *   scaisend key create    --tenant tnt_… --name ci --environment test --scopes mail.send
 *   scaisend secrets reseal                                        re-seal every DKIM key under SECRETS_KEY
 *   scaisend bounce classify < message.eml                         local: classify a bounce or complaint
 * Edge URL and operator token come from --edge / --admin-token or SCAISEND_EDGE_URL / SCAISEND_ADMIN_TOKEN.
 */
import { parseArgs } from "node:util";
import { PERMISSIONS } from "../shared/permissions.ts";
import { AdminClient, type DomainView, type ResealPageView } from "./lib/admin-client.ts";

const USAGE = `usage:
  scaisend bootstrap --tenant NAME --domain DOMAIN [--dmarc-policy none|quarantine|reject] [--dkim rsa|dual]
  scaisend domain show --tenant TENANT_ID --id DOMAIN_ID
  scaisend domain verify --tenant TENANT_ID --id DOMAIN_ID
  scaisend domain ed25519 add|remove --tenant TENANT_ID --id DOMAIN_ID   (dual signing; add again rotates)
  scaisend key create --tenant TENANT_ID --name NAME [--environment live|test] [--scopes a,b]
  scaisend secrets reseal [--limit N]   (after a SECRETS_KEY rotation; see docs/operations.md)
  scaisend bounce classify < message.eml   (local; VERP_SECRET verifies VERP tokens; see docs/bounces.md)
  scaisend sk-templates list|show|create|version|publish|rollback|archive|unarchive …   (--help for more)
options: --edge URL (or SCAISEND_EDGE_URL), --admin-token TOKEN (or SCAISEND_ADMIN_TOKEN)`;

function printRecords(d: DomainView): void {
  console.log(`\nPublish these DNS records for ${d.domain}, then run "scaisend domain verify":`);
  for (const r of d.dns_records) console.log(`  ${r.type.padEnd(4)} ${r.host}\n       ${r.value}`);
}

export async function runCli(argv: string[]): Promise<number> {
  if (argv[0] === "sk-templates") {
    // SenderKit templates: its own options (scripts/lib/sk-templates-cli.ts).
    const { runSkTemplatesCli } = await import("./lib/sk-templates-cli.ts");
    return runSkTemplatesCli(argv.slice(1));
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
      help: { type: "boolean" },
    },
  });
  const command = positionals.join(" ");
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
  const token = values["admin-token"] ?? process.env.SCAISEND_ADMIN_TOKEN;
  if (!edge || !token) {
    console.error(
      "scaisend: --edge and --admin-token (or SCAISEND_EDGE_URL / SCAISEND_ADMIN_TOKEN) are required",
    );
    return 2;
  }
  const admin = new AdminClient(edge, token);
  const need = (name: "tenant" | "domain" | "id" | "name") => {
    const v = values[name];
    if (!v) throw new Error(`--${name} is required for "${command}"`);
    return v;
  };

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
    case "domain show":
      printRecords(await admin.getDomain(need("tenant"), need("id")));
      return 0;
    case "domain ed25519 add":
      printRecords(await admin.addEd25519Key(need("tenant"), need("id")));
      return 0;
    case "domain ed25519 remove":
      printRecords(await admin.removeEd25519Key(need("tenant"), need("id")));
      return 0;
    case "domain verify": {
      const r = await admin.verifyDomain(need("tenant"), need("id"));
      console.log(r.verified ? "verified" : "not verified");
      for (const e of r.errors) console.log(`  ${e.record}: ${e.message}`);
      return r.verified ? 0 : 1;
    }
    case "key create": {
      const environment = values.environment === "test" ? "test" : "live";
      const scopes = (values.scopes ?? "mail.send")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      const key = await admin.createApiKey(need("tenant"), { name: need("name"), environment, scopes });
      console.log(`${key.api_key}\n(shown once; scopes: ${key.scopes.join(", ")})`);
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
      console.log(
        `key id ${keyId}: ${totals.examined} domains; keys: ${totals.resealed} re-sealed, ` +
          `${totals.current} already current, ${failed.length} failed`,
      );
      for (const f of failed)
        console.log(
          `  ${f.domain} (${f.domain_id}, tenant ${f.tenant_id})${f.key ? ` ${f.key} key` : ""}: ${f.error}`,
        );
      return failed.length === 0 ? 0 : 1;
    }
    default:
      console.error(`scaisend: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}
