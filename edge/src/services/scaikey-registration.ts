/**
 * What `scaisend register` obtained from ScaiKey (docs/scaikey.md#register), kept in D1 with its
 * secrets sealed under SECRETS_KEY (lib/secret-box.ts, AAD naming the field, so a value copied into
 * the other column does not open): the OAuth client the login uses (services/oidc-settings.ts) and
 * the webhook subscription whose signing secret authenticates /webhooks/scaikey.
 */
import {
  getScaiKeyRegistration,
  putScaiKeyRegistration,
  type ScaiKeyRegistrationRow,
} from "../db/identity.ts";
import type { Db } from "../db/client.ts";
import { isSealedWithCurrent, keyId, open, seal, type Keyring } from "../lib/secret-box.ts";

const CLIENT_SECRET_AAD = "scaikey:client_secret";
const WEBHOOK_SECRET_AAD = "scaikey:webhook_secret";

export interface RegistrationInput {
  issuer: string;
  clientId?: string | undefined;
  clientSecret?: string | undefined;
  redirectUri?: string | undefined;
  webhookId?: string | undefined;
  webhookUrl?: string | undefined;
  webhookSecret?: string | undefined;
}

/** Stores the fields given (sealing the secrets); fields not given keep their stored values. */
export async function saveRegistration(
  db: Db,
  keys: Keyring,
  input: RegistrationInput,
  now: number,
): Promise<ScaiKeyRegistrationRow> {
  const defined = <T>(v: T | undefined) => v !== undefined;
  return putScaiKeyRegistration(
    db,
    {
      issuer: input.issuer,
      ...(defined(input.clientId) ? { clientId: input.clientId } : {}),
      ...(defined(input.clientSecret)
        ? { clientSecret: await seal(keys, input.clientSecret!, CLIENT_SECRET_AAD) }
        : {}),
      ...(defined(input.redirectUri) ? { redirectUri: input.redirectUri } : {}),
      ...(defined(input.webhookId) ? { webhookId: input.webhookId } : {}),
      ...(defined(input.webhookUrl) ? { webhookUrl: input.webhookUrl } : {}),
      ...(defined(input.webhookSecret)
        ? { webhookSecret: await seal(keys, input.webhookSecret!, WEBHOOK_SECRET_AAD) }
        : {}),
    },
    now,
  );
}

export function registration(db: Db): Promise<ScaiKeyRegistrationRow | undefined> {
  return getScaiKeyRegistration(db);
}

/** The registered OAuth client, complete, or undefined. */
export async function registeredClient(
  db: Db,
  keys: Keyring,
): Promise<{ issuer: string; clientId: string; clientSecret: string; redirectUri: string } | undefined> {
  const row = await getScaiKeyRegistration(db);
  if (!row?.clientId || !row.clientSecret || !row.redirectUri) return undefined;
  return {
    issuer: row.issuer,
    clientId: row.clientId,
    clientSecret: await open(keys, row.clientSecret, CLIENT_SECRET_AAD),
    redirectUri: row.redirectUri,
  };
}

/** The webhook's signing secret, or undefined when no subscription is registered. */
export async function webhookSecret(db: Db, keys: Keyring): Promise<string | undefined> {
  const row = await getScaiKeyRegistration(db);
  return row?.webhookSecret ? open(keys, row.webhookSecret, WEBHOOK_SECRET_AAD) : undefined;
}

/** What re-sealing the registration's two secrets did (the last phase of services/secrets-reseal.ts). */
export interface RegistrationResealPage {
  keyId: string;
  /** 1 when a registration is stored, else 0. */
  examined: number;
  resealed: number;
  alreadyCurrent: number;
  failed: { kind: "scaikey_client_secret" | "scaikey_webhook_secret"; id: string; error: string }[];
}

/**
 * Re-seals the client secret and the webhook signing secret under the current SECRETS_KEY
 * (docs/operations.md, "Rotating SECRETS_KEY"). One row, so one page; a secret already under the
 * current key is left alone, so a repeated page changes nothing.
 */
export async function resealRegistration(
  db: Db,
  keys: Keyring,
  now: number,
): Promise<RegistrationResealPage> {
  const row = await getScaiKeyRegistration(db);
  const page: RegistrationResealPage = {
    keyId: await keyId(keys.current),
    examined: row ? 1 : 0,
    resealed: 0,
    alreadyCurrent: 0,
    failed: [],
  };
  if (!row) return page;
  const fields = [
    { kind: "scaikey_client_secret", column: "clientSecret", aad: CLIENT_SECRET_AAD },
    { kind: "scaikey_webhook_secret", column: "webhookSecret", aad: WEBHOOK_SECRET_AAD },
  ] as const;
  const patch: Partial<Pick<ScaiKeyRegistrationRow, "clientSecret" | "webhookSecret">> = {};
  for (const f of fields) {
    const sealed = row[f.column];
    if (!sealed) continue;
    try {
      if (await isSealedWithCurrent(keys, sealed)) {
        page.alreadyCurrent++;
        continue;
      }
      patch[f.column] = await seal(keys, await open(keys, sealed, f.aad), f.aad);
      page.resealed++;
    } catch (err) {
      page.failed.push({
        kind: f.kind,
        id: row.issuer,
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }
  if (page.resealed > 0) await putScaiKeyRegistration(db, { issuer: row.issuer, ...patch }, now);
  return page;
}
