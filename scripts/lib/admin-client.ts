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

export interface DnsRecord {
  purpose: string;
  type: string;
  host: string;
  value: string;
}

export interface DomainView {
  id: string;
  domain: string;
  verified: boolean;
  dns_records: DnsRecord[];
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
  /** One entry per key that did not re-seal; `key` says which of the domain's keys. */
  failed: { domain_id: string; tenant_id: string; domain: string; key?: string; error: string }[];
  next_cursor: string | null;
}

export class AdminClient {
  constructor(
    readonly edgeUrl: string,
    private readonly bearer: string,
  ) {}

  private async call<T>(method: string, path: string, body: unknown, what: string): Promise<T> {
    const res = await fetch(new URL(path, this.edgeUrl), {
      method,
      headers: { authorization: `Bearer ${this.bearer}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    const parsed: unknown = text ? JSON.parse(text) : null;
    if (!res.ok) throw new AdminApiError(res.status, parsed, what);
    return (parsed as { data: T }).data;
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
    return this.call<{ verified: boolean; errors: { record: string; message: string }[] }>(
      "POST",
      `/api/admin/domains/${id}/verify?tenant_id=${tenantId}`,
      undefined,
      "verify domain",
    );
  }
}
