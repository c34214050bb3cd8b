/**
 * What every test that links real origin code to the Worker in workerd (scripts/lib/miniflare-edge.ts)
 * sets up first: fresh edge secrets, a work folder under the repository's .tmp/ (workerd resolves the
 * bundle's modules from the repository), and a tenant with a live `mail.send` key and a verified
 * sender domain, made through the admin API as an operator would.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { AdminClient } from "../../scripts/lib/admin-client.ts";
import { REPO_ROOT } from "../../scripts/lib/wrangler-dev.ts";

export interface EdgeSecrets {
  ORIGIN_TOKEN: string;
  ADMIN_TOKEN: string;
  SECRETS_KEY: string;
  TRACKING_SECRET: string;
}

/** Random values for the edge's required secrets (docs/configuration.md). */
export function freshSecrets(): EdgeSecrets {
  return {
    ORIGIN_TOKEN: randomBytes(24).toString("hex"),
    ADMIN_TOKEN: randomBytes(24).toString("hex"),
    SECRETS_KEY: randomBytes(32).toString("base64"),
    TRACKING_SECRET: randomBytes(24).toString("hex"),
  };
}

/** A new folder `.tmp/<prefix>-XXXXXX` in the repository; the caller removes it. */
export function testWorkDir(prefix: string): string {
  const root = path.join(REPO_ROOT, ".tmp");
  fs.mkdirSync(root, { recursive: true });
  return fs.mkdtempSync(path.join(root, `${prefix}-`));
}

/**
 * A tenant named `tenantName` with a live key that may send, and `domain` as its sender domain. The
 * domain must come out verified (the edge runs with DEV_MODE=true), or the tests after it would be
 * refused for another reason than the one they test.
 */
export async function liveSender(
  edgeUrl: string,
  secrets: EdgeSecrets,
  tenantName: string,
  domain: string,
): Promise<{ tenantId: string; apiKey: string }> {
  const admin = new AdminClient(edgeUrl, secrets.ADMIN_TOKEN);
  const tenant = await admin.createTenant(tenantName);
  const key = await admin.createApiKey(tenant.id, {
    name: "live",
    environment: "live",
    scopes: ["mail.send"],
  });
  const created = await admin.createDomain(tenant.id, domain);
  if (!created.verified)
    throw new Error(`sender domain ${domain} is not verified: does the edge run with DEV_MODE=true?`);
  return { tenantId: tenant.id, apiKey: key.api_key };
}
