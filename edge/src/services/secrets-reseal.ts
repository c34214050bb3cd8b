/**
 * One page of a SECRETS_KEY rotation's re-seal (docs/operations.md, "Rotating SECRETS_KEY"), over
 * every secret the edge keeps sealed, in phases the cursor carries:
 *
 *  1. `domains`: the DKIM private keys in D1 (services/domains.ts, resealDomainKeys): the RSA key,
 *     the Ed25519 key and a pending rotation's key. Cursor: null, or the last domain id (`dom_…`).
 *  2. `provider_connections`: the SMS / push / web push credentials in D1
 *     (services/provider-connections.ts). Cursor: `connections:` then `connections:<last id>`.
 *  3. `webhooks`: per tenant, the secrets its WebhookQueue keeps (services/webhook-secrets-reseal.ts).
 *     Cursor: `webhooks:` then `webhooks:<last tenant id>`.
 *  4. `scaikey`: the OAuth client secret and webhook signing secret `scaisend register` stored
 *     (services/scaikey-registration.ts). Cursor: `scaikey:`; one page.
 *
 * Tokens, API keys and TRACKING_SECRET-derived keys are hashes or derived, not sealed, and have
 * nothing to re-seal. Each page is small enough for one Worker request; a failure is reported and
 * never stops the walk; a page may be repeated (everything already current is left alone).
 */
import { asc, gt } from "drizzle-orm";
import type { Bindings } from "../env.ts";
import type { Db } from "../db/client.ts";
import { tenants } from "../db/schema.ts";
import { keyId, type Keyring } from "../lib/secret-box.ts";
import { resealDomainKeys, type ResealPage } from "./domains.ts";
import { resealConnectionsPage, type ConnectionsResealPage } from "./provider-connections.ts";
import { resealRegistration, type RegistrationResealPage } from "./scaikey-registration.ts";
import type { WebhookSecretKind } from "./webhook-secrets-reseal.ts";

const WEBHOOKS = "webhooks:";
const CONNECTIONS = "connections:";
const SCAIKEY = "scaikey:";

export interface SecretsResealPage {
  phase: "domains" | "provider_connections" | "webhooks" | "scaikey";
  keyId: string;
  /** Domains (phase 1) or tenants (phase 2) looked at; the other counts are secrets. */
  examined: number;
  resealed: number;
  alreadyCurrent: number;
  failed: (
    | ResealPage["failed"][number]
    | ConnectionsResealPage["failed"][number]
    | (RegistrationResealPage["failed"][number] & { tenantId: null })
    | { tenantId: string; kind: WebhookSecretKind; id: string; error: string }
  )[];
  nextCursor: string | null;
}

export async function resealSecretsPage(
  deps: { db: Db; secrets: Keyring; env: Pick<Bindings, "WEBHOOK_QUEUE"> },
  cursor: string | null,
  limit: number,
): Promise<SecretsResealPage> {
  if (cursor === SCAIKEY) {
    const page = await resealRegistration(deps.db, deps.secrets, Date.now());
    return {
      phase: "scaikey",
      keyId: page.keyId,
      examined: page.examined,
      resealed: page.resealed,
      alreadyCurrent: page.alreadyCurrent,
      failed: page.failed.map((f) => ({ tenantId: null, ...f })),
      nextCursor: null,
    };
  }
  if (cursor?.startsWith(CONNECTIONS)) {
    const page = await resealConnectionsPage(deps.db, deps.secrets, cursor.slice(CONNECTIONS.length), limit);
    return {
      phase: "provider_connections",
      keyId: page.keyId,
      examined: page.examined,
      resealed: page.resealed,
      alreadyCurrent: page.alreadyCurrent,
      failed: page.failed,
      // The last connections page hands over to the webhook phase.
      nextCursor: page.nextCursor === null ? WEBHOOKS : `${CONNECTIONS}${page.nextCursor}`,
    };
  }
  if (cursor === null || !cursor.startsWith(WEBHOOKS)) {
    const page = await resealDomainKeys(deps.db, deps.secrets, cursor, limit);
    return {
      phase: "domains",
      keyId: page.keyId,
      examined: page.examined,
      resealed: page.resealed,
      alreadyCurrent: page.alreadyCurrent,
      failed: page.failed,
      // The last domain page hands over to the provider connections.
      nextCursor: page.nextCursor ?? CONNECTIONS,
    };
  }
  const after = cursor.slice(WEBHOOKS.length);
  const rows = await deps.db
    .select({ id: tenants.id })
    .from(tenants)
    .where(after === "" ? undefined : gt(tenants.id, after))
    .orderBy(asc(tenants.id))
    .limit(limit);
  const page: SecretsResealPage = {
    phase: "webhooks",
    keyId: await keyId(deps.secrets.current),
    examined: rows.length,
    resealed: 0,
    alreadyCurrent: 0,
    failed: [],
    // The last tenants page hands over to the ScaiKey registration.
    nextCursor: rows.length === limit ? `${WEBHOOKS}${rows[rows.length - 1]!.id}` : SCAIKEY,
  };
  // One object per tenant; a few at a time keeps the request's subrequests and memory bounded.
  const PARALLEL = 8;
  for (let i = 0; i < rows.length; i += PARALLEL) {
    const results = await Promise.all(
      rows.slice(i, i + PARALLEL).map(async ({ id }) => {
        try {
          return { id, result: await deps.env.WEBHOOK_QUEUE.getByName(id).resealSecrets(id, deps.secrets) };
        } catch (err) {
          return { id, error: err instanceof Error ? err.message : String(err) };
        }
      }),
    );
    for (const r of results) {
      if ("error" in r) {
        page.failed.push({ tenantId: r.id, kind: "webhook_secret", id: "*", error: r.error! });
        continue;
      }
      page.resealed += r.result.resealed;
      page.alreadyCurrent += r.result.alreadyCurrent;
      for (const f of r.result.failed) page.failed.push({ tenantId: r.id, ...f });
    }
  }
  return page;
}
