/**
 * Re-seals the secrets a tenant's WebhookQueue keeps in its SQLite (objects/webhook-queue.ts) under
 * the keyring's current key, during a SECRETS_KEY rotation (docs/operations.md, "Rotating
 * SECRETS_KEY"):
 *
 *  - `webhook_secret`: each ScaiSend endpoint's `whsec_…` signing secret (AAD `webhook:<tenant>:<id>`);
 *  - `webhook_oauth_secret`: each endpoint's OAuth2 client secret (AAD `webhook-oauth:<tenant>:<id>`);
 *  - `event_webhook_signing_key`: the ECDSA private key of SendGrid's Signed Event Webhook
 *    (AAD `webhook-signing-key:<tenant>`).
 *
 * A value already sealed under the current key is left alone; one that no configured key opens is
 * reported and left alone. Each write is a compare-and-set on the value read, so a secret rotated
 * meanwhile is not overwritten with a stale one. The object runs one call at a time, so the walk
 * of one tenant's rows is consistent.
 */
import { isSealedWithCurrent, open, seal, type Keyring } from "../lib/secret-box.ts";

export type WebhookSecretKind = "webhook_secret" | "webhook_oauth_secret" | "event_webhook_signing_key";

export interface WebhookResealResult {
  resealed: number;
  alreadyCurrent: number;
  failed: { kind: WebhookSecretKind; id: string; error: string }[];
}

interface Sealed {
  kind: WebhookSecretKind;
  /** Endpoint id, or "signing_key". */
  id: string;
  value: string;
  aad: string;
  /** Writes `next` only while the row still holds `expected`. */
  write(next: string, expected: string): void;
}

export async function resealWebhookSecrets(
  sql: SqlStorage,
  tenantId: string,
  keys: Keyring,
): Promise<WebhookResealResult> {
  const items: Sealed[] = [];
  const endpoints = sql
    .exec<{ id: string; secret: string | null; oauth_secret: string | null }>(
      "SELECT id, secret, oauth_secret FROM endpoint",
    )
    .toArray();
  for (const ep of endpoints) {
    if (ep.secret !== null) {
      items.push({
        kind: "webhook_secret",
        id: ep.id,
        value: ep.secret,
        aad: `webhook:${tenantId}:${ep.id}`,
        write: (next, expected) =>
          sql.exec("UPDATE endpoint SET secret = ? WHERE id = ? AND secret = ?", next, ep.id, expected),
      });
    }
    if (ep.oauth_secret !== null) {
      items.push({
        kind: "webhook_oauth_secret",
        id: ep.id,
        value: ep.oauth_secret,
        aad: `webhook-oauth:${tenantId}:${ep.id}`,
        write: (next, expected) =>
          sql.exec(
            "UPDATE endpoint SET oauth_secret = ? WHERE id = ? AND oauth_secret = ?",
            next,
            ep.id,
            expected,
          ),
      });
    }
  }
  const signing = sql.exec<{ private_key: string }>("SELECT private_key FROM signing_key").toArray()[0];
  if (signing) {
    items.push({
      kind: "event_webhook_signing_key",
      id: "signing_key",
      value: signing.private_key,
      aad: `webhook-signing-key:${tenantId}`,
      write: (next, expected) =>
        sql.exec("UPDATE signing_key SET private_key = ? WHERE private_key = ?", next, expected),
    });
  }
  const result: WebhookResealResult = { resealed: 0, alreadyCurrent: 0, failed: [] };
  for (const item of items) {
    let plain: string;
    try {
      // Opened even when current: a value bound to another owner is reported, never passed on.
      plain = await open(keys, item.value, item.aad);
    } catch (err) {
      result.failed.push({
        kind: item.kind,
        id: item.id,
        error: err instanceof Error ? err.message : String(err),
      });
      continue;
    }
    if (await isSealedWithCurrent(keys, item.value)) {
      result.alreadyCurrent += 1;
      continue;
    }
    item.write(await seal(keys, plain, item.aad), item.value);
    result.resealed += 1;
  }
  return result;
}
