/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * API keys (docs/dashboard.md#pages): list, create (the secret shown once, on the answer to the
 * create), revoke. Every route needs admin.api_keys, as /v3/api_keys does; a key can only be given
 * permissions the session holds (services/api-keys.ts, no escalation). The session acts as a live
 * caller named by the session's subject (`login:<id>`, or a ScaiKey user's id). Creating a key spends
 * from the tenant's api_keys.create bucket, the one POST /v3/api_keys spends from (10 a minute).
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import { PERMISSIONS } from "../../../../shared/permissions.ts";
import type { ApiKeyRow } from "../../db/api-keys.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { tenantRateLimit } from "../../middleware/rate-limit.ts";
import { createKey, listKeys, revokeKey, type Caller } from "../../services/api-keys.ts";
import type { DashboardSession } from "../../services/dashboard-sessions.ts";
import { RATE_LIMITS } from "../../services/rate-limit-table.ts";
import { CsrfField, Page } from "./layout.tsx";
import { dashboardPermission, requireCsrf, type DashboardEnv } from "./session.ts";

const createLimit = tenantRateLimit<DashboardEnv>(
  RATE_LIMITS.apiKeysCreate,
  (c) => c.get("session").tenantId,
);

const callerOf = (s: DashboardSession): Caller => ({
  tenantId: s.tenantId,
  keyId: s.subject,
  environment: "live",
  scopes: s.permissions,
});

function KeysPage(props: {
  session: DashboardSession;
  keys: ApiKeyRow[];
  created?: { name: string; apiKey: string };
}) {
  const { session, keys, created } = props;
  return (
    <Page title="API keys" session={session} current="/app/keys">
      {created ? (
        <section class="notice" aria-labelledby="new-key">
          <h2 id="new-key">New key “{created.name}”</h2>
          <p>Copy it now: it is shown this once and cannot be read again.</p>
          <p>
            <output class="secret" id="new-key-secret">
              {created.apiKey}
            </output>
          </p>
        </section>
      ) : null}
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Prefix</th>
            <th scope="col">Environment</th>
            <th scope="col">Scopes</th>
            <th scope="col">Created</th>
            <th scope="col">Last used</th>
            <th scope="col">
              <span class="skip">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {keys.map((k) => (
            <tr>
              <td>{k.name}</td>
              <td>
                <code>{k.prefix}…</code>
              </td>
              <td>{k.environment}</td>
              <td>{k.scopes.join(", ") || "none"}</td>
              <td>{iso(k.createdAt)}</td>
              <td>{iso(k.lastUsedAt) ?? "never"}</td>
              <td>
                <form method="post" action={`/app/keys/${encodeURIComponent(k.id)}/revoke`}>
                  <CsrfField session={session} />
                  <button type="submit" class="danger" aria-label={`Revoke ${k.name}`}>
                    Revoke
                  </button>
                </form>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Create a key</h2>
      <form method="post" action="/app/keys" id="create-key">
        <CsrfField session={session} />
        <label>
          Name
          <input type="text" name="name" required maxlength={255} />
        </label>
        <label>
          Environment
          <select name="environment">
            <option value="live">live</option>
            <option value="test">test</option>
          </select>
        </label>
        <fieldset>
          <legend>Scopes (only those you hold)</legend>
          {PERMISSIONS.filter((p) => session.permissions.includes(p)).map((p) => (
            <label class="check">
              <input type="checkbox" name="scopes" value={p} /> {p}
            </label>
          ))}
        </fieldset>
        <p>
          <button type="submit">Create key</button>
        </p>
      </form>
    </Page>
  );
}

/** The create form: exactly these fields, valid, or a 400 naming the problem. */
function parseCreate(form: Record<string, string | File | (string | File)[]>) {
  const extra = Object.keys(form).filter(
    (k) => !["_csrf", "name", "environment", "scopes", "scopes[]"].includes(k),
  );
  if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
  const name = typeof form.name === "string" ? form.name.trim() : "";
  if (name.length < 1 || name.length > 255 || /\p{Cc}/u.test(name)) {
    throw new AppError("invalid_request", "name must be 1 to 255 characters without control characters");
  }
  const environment = form.environment ?? "live";
  if (environment !== "live" && environment !== "test") {
    throw new AppError("invalid_request", "environment must be live or test");
  }
  const raw = form.scopes ?? [];
  const scopes = (Array.isArray(raw) ? raw : [raw]).map(String);
  const unknown = scopes.filter((s) => !(PERMISSIONS as readonly string[]).includes(s));
  if (unknown.length) throw new AppError("invalid_request", `Unknown scope: ${unknown.join(", ")}`);
  return { name, environment, scopes } as const;
}

const keysOf = (c: { get(k: "db"): import("../../db/client.ts").Db }, tenantId: string) =>
  listKeys(c.get("db"), tenantId, { includeRevoked: false, limit: 100 });

export const keysPages = new Hono<DashboardEnv>()
  .get("/keys", dashboardPermission(), async (c) => {
    const session = c.get("session");
    return c.html(<KeysPage session={session} keys={await keysOf(c, session.tenantId)} />);
  })
  .post("/keys", dashboardPermission(), requireCsrf(), createLimit, async (c) => {
    const session = c.get("session");
    const input = parseCreate(await c.req.parseBody({ all: true }));
    const now = Date.now();
    const { row, apiKey } = await createKey(
      c.get("db"),
      callerOf(session),
      { ...input, scopes: [...input.scopes], expiresAt: null },
      now,
    );
    // The secret is in this answer only: never cached, never stored.
    c.header("Cache-Control", "no-store");
    return c.html(
      <KeysPage
        session={session}
        keys={await keysOf(c, session.tenantId)}
        created={{ name: row.name, apiKey }}
      />,
      201,
    );
  })
  .post("/keys/:id/revoke", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    await revokeKey(c.get("db"), session.tenantId, c.req.param("id"), Date.now());
    return c.redirect("/app/keys", 303);
  });
