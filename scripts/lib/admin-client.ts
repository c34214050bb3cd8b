/**
 * A small client for the bootstrap calls of the admin API (used by the `scaisend` CLI, `npm start`
 * and the end-to-end tests). Errors carry the server's status and body.
 */

export class AdminApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    what: string,
  ) {
    super(`${what} failed: HTTP ${status} ${JSON.stringify(body)}`);
  }
}

/** The text one failed call prints: the server's message (FastAPI `detail`), not a stack. */
export function describeError(err: unknown): string {
  if (err instanceof AdminApiError) {
    const body = err.body as { detail?: unknown } | null;
    const detail =
      typeof body?.detail === "string"
        ? body.detail
        : Array.isArray(body?.detail)
          ? (body.detail as { loc?: unknown[]; msg?: string }[])
              .map((d) => `${(d.loc ?? []).join(".")}: ${d.msg ?? ""}`)
              .join("; ")
          : JSON.stringify(err.body);
    return `${err.message.split(" failed:")[0]} failed: HTTP ${err.status} ${detail}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export interface DnsRecord {
  purpose: string;
  type: string;
  host: string;
  value: string;
  /** MX records only (the bounce MX): the preference to publish. */
  priority?: number;
  /** required | pending | retiring | removable (docs/api/admin.md#sender-domains). */
  status?: string;
  remove_after?: string;
}

export interface DomainView {
  id: string;
  domain: string;
  verified: boolean;
  is_active?: boolean;
  dkim_selector?: string;
  dkim_pending_selector?: string | null;
  dns_records: DnsRecord[];
}

export interface TenantView {
  id: string;
  name: string;
  status: string;
  [k: string]: unknown;
}

export interface VerifyView {
  verified: boolean;
  dkim_switched?: boolean;
  dkim_selector?: string;
  checks?: {
    purpose: string;
    host: string;
    ok: boolean;
    message?: string;
    expected?: string;
    found?: string[];
  }[];
  errors: { record: string; message: string }[];
}

export interface ApiKeyView {
  id: string;
  api_key: string;
  prefix: string;
  environment: "live" | "test";
  scopes: string[];
}

export interface ResealPageView {
  key_id: string;
  examined: number;
  resealed: number;
  already_current: number;
  phase?: "domains" | "provider_connections" | "webhooks" | "scaikey";
  /** One entry per secret that did not re-seal: a domain's key (`key`), or another secret (`kind`). */
  failed: {
    domain_id?: string;
    /** null for the ScaiKey registration, which belongs to no tenant. */
    tenant_id: string | null;
    domain?: string;
    key?: string;
    kind?: string;
    id?: string;
    error: string;
  }[];
  next_cursor: string | null;
}

export class AdminClient {
  constructor(
    readonly edgeUrl: string,
    private readonly bearer: string,
  ) {}

  private async call<T>(method: string, path: string, body: unknown, what: string): Promise<T> {
    return (await this.request<{ data: T }>(method, path, body, what)).data;
  }

  /** The whole JSON body (null for 204); errors carry the status and body. */
  async request<T>(method: string, path: string, body: unknown, what: string): Promise<T> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.edgeUrl), {
        method,
        headers: { authorization: `Bearer ${this.bearer}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw new Error(
        `${what} failed: cannot reach ${this.edgeUrl} (${err instanceof Error ? err.message : String(err)})`,
      );
    }
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    if (!res.ok) throw new AdminApiError(res.status, parsed, what);
    return parsed as T;
  }

  listTenants() {
    return this.call<TenantView[]>("GET", "/api/admin/tenants", undefined, "list tenants");
  }

  getTenant(id: string) {
    return this.call<TenantView>(
      "GET",
      `/api/admin/tenants/${encodeURIComponent(id)}`,
      undefined,
      "get tenant",
    );
  }

  /** PATCH status (the operator, or the partner's admin). */
  setTenantStatus(id: string, status: "active" | "suspended") {
    return this.call<TenantView>(
      "PATCH",
      `/api/admin/tenants/${encodeURIComponent(id)}`,
      { status },
      `set tenant status to ${status}`,
    );
  }

  /** One page of the tenant's domains; pass next_cursor back for the next. */
  listDomains(tenantId: string, cursor: string | null, limit = 100) {
    const q = new URLSearchParams({ tenant_id: tenantId, limit: String(limit) });
    if (cursor) q.set("cursor", cursor);
    return this.request<{ data: DomainView[]; total: number; next_cursor: string | null }>(
      "GET",
      `/api/admin/domains?${q}`,
      undefined,
      "list domains",
    );
  }

  /**
   * Starts a DKIM rotation: a new key (RSA, or with `ed25519` the dual-signing domain's Ed25519 key)
   * under the next selector, signing once verify finds its record.
   */
  rotateDkim(tenantId: string, id: string, algorithm?: "rsa" | "ed25519") {
    return this.call<DomainView>(
      "POST",
      `/api/admin/domains/${encodeURIComponent(id)}/rotate-dkim?tenant_id=${encodeURIComponent(tenantId)}`,
      algorithm === undefined ? undefined : { algorithm },
      "rotate DKIM key",
    );
  }

  async deleteDomain(tenantId: string, id: string): Promise<void> {
    await this.request<null>(
      "DELETE",
      `/api/admin/domains/${encodeURIComponent(id)}?tenant_id=${encodeURIComponent(tenantId)}`,
      undefined,
      "delete domain",
    );
  }

  /** With a tenant's API key (api_keys scope): /v3/api_keys, which the operator token cannot use. */
  listApiKeys() {
    return this.request<{
      api_keys: { id?: string; api_key_id?: string; name: string; [k: string]: unknown }[];
    }>("GET", "/v3/api_keys", undefined, "list API keys");
  }

  async revokeApiKey(id: string): Promise<void> {
    await this.request<null>("DELETE", `/v3/api_keys/${encodeURIComponent(id)}`, undefined, "revoke API key");
  }

  createTenant(name: string) {
    return this.call<{ id: string; name: string }>("POST", "/api/admin/tenants", { name }, "create tenant");
  }

  createApiKey(tenantId: string, input: { name: string; environment: "live" | "test"; scopes: string[] }) {
    return this.call<ApiKeyView>("POST", `/api/admin/tenants/${tenantId}/api_keys`, input, "create API key");
  }

  /** `dkimAlgorithm` "dual" adds an Ed25519 key beside the RSA one (docs/api/admin.md). */
  createDomain(tenantId: string, domain: string, dmarcPolicy = "none", dkimAlgorithm = "rsa") {
    return this.call<DomainView>(
      "POST",
      "/api/admin/domains",
      { domain, dmarc_policy: dmarcPolicy, dkim_algorithm: dkimAlgorithm, tenant_id: tenantId },
      "create domain",
    );
  }

  /** Adds the domain's Ed25519 key, or rotates it to the next selector when it has one. */
  addEd25519Key(tenantId: string, id: string) {
    return this.call<DomainView>(
      "POST",
      `/api/admin/domains/${id}/dkim/ed25519?tenant_id=${tenantId}`,
      undefined,
      "add Ed25519 DKIM key",
    );
  }

  /** Back to RSA-only signing. */
  removeEd25519Key(tenantId: string, id: string) {
    return this.call<DomainView>(
      "DELETE",
      `/api/admin/domains/${id}/dkim/ed25519?tenant_id=${tenantId}`,
      undefined,
      "remove Ed25519 DKIM key",
    );
  }

  getDomain(tenantId: string, id: string) {
    return this.call<DomainView>(
      "GET",
      `/api/admin/domains/${id}?tenant_id=${tenantId}`,
      undefined,
      "get domain",
    );
  }

  /** One page of a SECRETS_KEY rotation (docs/operations.md); pass next_cursor back for the next. */
  resealSecrets(cursor: string | null, limit?: number) {
    return this.call<ResealPageView>(
      "POST",
      "/api/admin/secrets/reseal",
      { cursor, ...(limit === undefined ? {} : { limit }) },
      "re-seal secrets",
    );
  }

  verifyDomain(tenantId: string, id: string) {
    return this.call<VerifyView>(
      "POST",
      `/api/admin/domains/${id}/verify?tenant_id=${tenantId}`,
      undefined,
      "verify domain",
    );
  }
}
