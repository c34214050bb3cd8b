/**
 * /api/admin/tenants/{id}/provider-connections (docs/api/admin.md#provider-connections): a tenant's
 * SMS, mobile push and web push provider credentials, which live `/v1` sends on those channels need
 * (services/provider-connections.ts). The operator token, or an API key of the tenant itself with
 * `admin.settings`; another tenant's id is 404, like one that does not exist. `{"data": …}` bodies;
 * secrets are write-only (the answers carry `credential_hints`).
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { AppError } from "../../../../shared/errors.ts";
import { CHANNEL_NAMES } from "../../../../shared/link/channel-job.ts";
import type { AppEnv } from "../../context.ts";
import { tenantProviderConnections } from "../../db/provider-connections.ts";
import { secretsKeyring } from "../../lib/dkim-key-box.ts";
import { PROVIDERS } from "../../services/provider-credentials.ts";
import {
  connectionView,
  createConnection,
  deleteConnection,
  requireConnection,
  updateConnection,
} from "../../services/provider-connections.ts";
import { requireTenant } from "../../services/tenants.ts";
import { routePermission } from "../route-permissions.ts";
import { parseInput, readJson } from "../validate.ts";

const name = z.string().trim().min(1).max(128);
const CreateBody = z.strictObject({
  channel: z.enum(CHANNEL_NAMES),
  provider: z.enum(PROVIDERS),
  name,
  is_default: z.boolean().optional(),
  credentials: z.record(z.string(), z.unknown()),
});
const PatchBody = z
  .strictObject({
    name: name.optional(),
    credentials: z.record(z.string(), z.unknown()).optional(),
    // Only true: a channel's default stops being one when another becomes it (there is no "no default" by PATCH).
    is_default: z.literal(true).optional(),
  })
  .refine((b) => Object.keys(b).length > 0, "name, credentials or is_default is required");
const ListQuery = z.strictObject({ channel: z.enum(CHANNEL_NAMES).optional() });

async function tenantOf(c: Context<AppEnv>): Promise<string> {
  const id = c.req.param("id") ?? "";
  const p = c.get("principal");
  if (p.kind !== "operator" && p.tenantId !== id) throw new AppError("not_found", "Tenant not found");
  return (await requireTenant(c.get("db"), id)).id;
}

const keysOf = (c: Context<AppEnv>) => secretsKeyring(c.get("config"));
const idOf = (c: Context<AppEnv>) => c.req.param("connection_id") ?? "";

export const providerConnectionsApi = new Hono<AppEnv>()
  .get("/", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const q = parseInput(ListQuery, c.req.query(), "query");
    const rows = await tenantProviderConnections(c.get("db"), tenantId).list(q.channel);
    return c.json({ data: rows.map(connectionView) });
  })
  .post("/", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const body = parseInput(CreateBody, await readJson(c.req.raw), "body");
    const row = await createConnection(
      c.get("db"),
      keysOf(c),
      tenantId,
      {
        channel: body.channel,
        provider: body.provider,
        name: body.name,
        isDefault: body.is_default,
        credentials: body.credentials,
      },
      Date.now(),
    );
    return c.json({ data: connectionView(row) }, 201);
  })
  .get("/:connection_id", routePermission(), async (c) => {
    const row = await requireConnection(c.get("db"), await tenantOf(c), idOf(c));
    return c.json({ data: connectionView(row) });
  })
  .patch("/:connection_id", routePermission(), async (c) => {
    const tenantId = await tenantOf(c);
    const body = parseInput(PatchBody, await readJson(c.req.raw), "body");
    const row = await updateConnection(
      c.get("db"),
      keysOf(c),
      tenantId,
      idOf(c),
      { name: body.name, credentials: body.credentials, isDefault: body.is_default },
      Date.now(),
    );
    return c.json({ data: connectionView(row) });
  })
  .delete("/:connection_id", routePermission(), async (c) => {
    await deleteConnection(c.get("db"), await tenantOf(c), idOf(c));
    return c.body(null, 204);
  });
