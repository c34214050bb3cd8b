/**
 * Provider connections (docs/channels.md#provider-connections): a tenant's credentials for a
 * provider of SMS, mobile push or web push, one default per channel plus any others a SenderKit
 * template names as its override. Credentials are sealed with SECRETS_KEY bound to the connection
 * (AAD `provider-connection:<id>`, lib/secret-box.ts), never shown again (the API shows hints), and
 * opened only by the OriginHub as it builds a channel job — the way DKIM keys are.
 */
import { AppError } from "../../../shared/errors.ts";
import type { ChannelName, ChannelProvider } from "../../../shared/link/channel-job.ts";
import type { Db } from "../db/client.ts";
import {
  connectionsPage,
  replaceSealed,
  tenantProviderConnections,
  type ProviderConnectionRow,
} from "../db/provider-connections.ts";
import { isoSeconds as iso } from "../lib/time.ts";
import { isSealedWithCurrent, keyId, open, seal, type Keyring } from "../lib/secret-box.ts";
import {
  CHANNEL_PROVIDERS,
  checkCredentials,
  CredentialsError,
  type ProviderKind,
} from "./provider-credentials.ts";

/** The owner a connection's sealed credentials are bound to (AES-GCM additional data). */
export const connectionAad = (id: string) => `provider-connection:${id}`;

/** At most this many connections per tenant. */
export const MAX_CONNECTIONS = 50;

export interface NewConnection {
  channel: ChannelName;
  provider: ProviderKind;
  name: string;
  isDefault?: boolean | undefined;
  credentials: unknown;
}

const notFound = () => new AppError("not_found", "Provider connection not found");

function credentialsInvalid(err: CredentialsError): AppError {
  return new AppError("invalid_request", "Invalid credentials", {
    fields: err.issues.map((i) => ({
      message: i.message,
      field: ["body", "credentials", ...i.path].join("."),
    })),
  });
}

async function checked(provider: ProviderKind, raw: unknown) {
  try {
    return await checkCredentials(provider, raw);
  } catch (err) {
    if (err instanceof CredentialsError) throw credentialsInvalid(err);
    throw err;
  }
}

/** The API's view: never the secrets, only their hints. */
export function connectionView(r: ProviderConnectionRow) {
  return {
    id: r.id,
    channel: r.channel,
    provider: r.provider,
    name: r.name,
    is_default: r.isDefault,
    credentials: r.settings,
    credential_hints: r.hints,
    created_at: iso(r.createdAt),
    updated_at: iso(r.updatedAt),
  };
}

export async function createConnection(
  db: Db,
  keys: Keyring,
  tenantId: string,
  input: NewConnection,
  now: number,
): Promise<ProviderConnectionRow> {
  if (!CHANNEL_PROVIDERS[input.channel].includes(input.provider)) {
    throw new AppError("invalid_request", "Invalid request", {
      fields: [
        {
          message: `a ${input.channel} connection's provider is one of ${CHANNEL_PROVIDERS[input.channel].join(", ")}`,
          field: "body.provider",
        },
      ],
    });
  }
  const c = await checked(input.provider, input.credentials);
  const repo = tenantProviderConnections(db, tenantId);
  const existing = await repo.list();
  if (existing.length >= MAX_CONNECTIONS) {
    throw new AppError("conflict", `A tenant has at most ${MAX_CONNECTIONS} provider connections`);
  }
  // A UUID: SenderKit's Message.providerConnectionId is one (its OpenAPI).
  const id = crypto.randomUUID();
  const row: ProviderConnectionRow = {
    id,
    tenantId,
    channel: input.channel,
    provider: input.provider,
    name: input.name,
    // The channel's first connection is its default unless the request says otherwise.
    isDefault: input.isDefault ?? !existing.some((e) => e.channel === input.channel && e.isDefault),
    settings: c.settings,
    hints: c.hints,
    credentialsSealed: await seal(keys, JSON.stringify(c.provider), connectionAad(id)),
    createdAt: now,
    updatedAt: now,
  };
  if (!(await repo.insert(row))) {
    throw new AppError("conflict", `The tenant already has a provider connection named "${input.name}"`);
  }
  return row;
}

export async function requireConnection(
  db: Db,
  tenantId: string,
  id: string,
): Promise<ProviderConnectionRow> {
  const row = await tenantProviderConnections(db, tenantId).get(id);
  if (!row) throw notFound();
  return row;
}

/** PATCH: rename, new credentials (a rotation: the whole set, validated again), make default. */
export async function updateConnection(
  db: Db,
  keys: Keyring,
  tenantId: string,
  id: string,
  patch: { name?: string | undefined; credentials?: unknown; isDefault?: true | undefined },
  now: number,
): Promise<ProviderConnectionRow> {
  const repo = tenantProviderConnections(db, tenantId);
  const row = await requireConnection(db, tenantId, id);
  const set: Parameters<typeof repo.update>[1] = { updatedAt: now };
  if (patch.name !== undefined && patch.name !== row.name) {
    if ((await repo.list()).some((r) => r.name === patch.name)) {
      throw new AppError("conflict", `The tenant already has a provider connection named "${patch.name}"`);
    }
    set.name = patch.name;
  }
  if (patch.credentials !== undefined) {
    const c = await checked(row.provider, patch.credentials);
    set.settings = c.settings;
    set.hints = c.hints;
    set.credentialsSealed = await seal(keys, JSON.stringify(c.provider), connectionAad(row.id));
  }
  let updated: ProviderConnectionRow | undefined;
  try {
    updated = await repo.update(row.id, set);
  } catch (err) {
    if (String(err).includes("provider_connections.name")) {
      throw new AppError("conflict", `The tenant already has a provider connection named "${patch.name}"`);
    }
    throw err;
  }
  if (!updated) throw notFound();
  if (patch.isDefault && !updated.isDefault) {
    await repo.makeDefault(updated, now);
    updated = { ...updated, isDefault: true };
  }
  return updated;
}

/** DELETE: refused (409) while a SenderKit template names it as its override. */
export async function deleteConnection(db: Db, tenantId: string, id: string): Promise<void> {
  const repo = tenantProviderConnections(db, tenantId);
  await requireConnection(db, tenantId, id);
  if (await repo.remove(id)) return;
  const slugs = await repo.templatesUsing(id);
  if (slugs.length > 0) {
    throw new AppError(
      "conflict",
      `The connection is the provider of SenderKit templates ${slugs.join(", ")}; set their provider_connection_id to another connection or null first`,
    );
  }
  throw notFound();
}

/**
 * A template's override (PATCH …/senderkit_templates/{slug} `provider_connection_id`): a connection
 * of the same tenant and the template's channel, or null for the channel's default.
 */
export async function setTemplateConnection(
  db: Db,
  tenantId: string,
  template: { id: string; channel: string },
  connectionId: string | null,
  now: number,
): Promise<void> {
  const repo = tenantProviderConnections(db, tenantId);
  if (connectionId !== null) {
    const row = await repo.get(connectionId);
    const field = "body.provider_connection_id";
    if (!row) {
      throw new AppError("invalid_request", "Invalid request", {
        fields: [{ message: "no provider connection of this tenant has this id", field }],
      });
    }
    if (row.channel !== template.channel) {
      throw new AppError("invalid_request", "Invalid request", {
        fields: [
          {
            message: `the connection is for ${row.channel}; the template's channel is ${template.channel}`,
            field,
          },
        ],
      });
    }
  }
  if (!(await repo.setTemplateOverride(template.id, connectionId, now))) throw notFound();
}

/** What a live send carries to its hub shard: the connection, its credentials still sealed. */
export interface SendConnection {
  id: string;
  provider: ProviderKind;
  credentialsSealed: string;
}

/**
 * The connection a live send on `channel` uses: its template's override, else the channel's
 * default; none → null (the caller answers `provider_not_configured`).
 */
export async function connectionForSend(
  db: Db,
  tenantId: string,
  channel: ChannelName,
  templateSlug: string | undefined,
): Promise<SendConnection | null> {
  const repo = tenantProviderConnections(db, tenantId);
  const overrideId = templateSlug !== undefined ? await repo.templateOverride(templateSlug) : null;
  const row = overrideId !== null ? await repo.get(overrideId) : await repo.defaultFor(channel);
  if (!row || row.channel !== channel) return null;
  return { id: row.id, provider: row.provider, credentialsSealed: row.credentialsSealed };
}

/** Opens a connection's sealed credentials (the hub, building a channel job). */
export async function openCredentials(
  keys: Keyring,
  connectionId: string,
  sealed: string,
): Promise<ChannelProvider> {
  return JSON.parse(await open(keys, sealed, connectionAad(connectionId))) as ChannelProvider;
}

export interface ConnectionsResealPage {
  keyId: string;
  examined: number;
  resealed: number;
  alreadyCurrent: number;
  failed: { tenantId: string; kind: "provider_connection"; id: string; error: string }[];
  nextCursor: string | null;
}

/** One page of the SECRETS_KEY re-seal over every tenant's connections (services/secrets-reseal.ts). */
export async function resealConnectionsPage(
  db: Db,
  keys: Keyring,
  after: string,
  limit: number,
): Promise<ConnectionsResealPage> {
  const rows = await connectionsPage(db, after, limit);
  const page: ConnectionsResealPage = {
    keyId: await keyId(keys.current),
    examined: rows.length,
    resealed: 0,
    alreadyCurrent: 0,
    failed: [],
    nextCursor: rows.length === limit ? rows[rows.length - 1]!.id : null,
  };
  for (const row of rows) {
    try {
      if (await isSealedWithCurrent(keys, row.credentialsSealed)) {
        page.alreadyCurrent++;
        continue;
      }
      const aad = connectionAad(row.id);
      const sealed = await seal(keys, await open(keys, row.credentialsSealed, aad), aad);
      // A rotation meanwhile wrote a value sealed with the current key: nothing to do then.
      if (await replaceSealed(db, row, sealed)) page.resealed++;
      else page.alreadyCurrent++;
    } catch (err) {
      page.failed.push({
        tenantId: row.tenantId,
        kind: "provider_connection",
        id: row.id,
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }
  return page;
}
