/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Sender domains (docs/dashboard.md#pages): the tenant's domains, and a domain's page with the DNS
 * records to publish (each with a copy button, an enhancement: the values are plain selectable text),
 * verification against DNS and DKIM rotation. Reads and writes go through the admin API's own code
 * (domainView in surfaces/admin/domains.ts, services/domains.ts, services/dkim-rotation.ts), with the
 * same permissions: domains.read to look, domains.write to verify or rotate.
 */
import { Hono } from "hono";
import type { Config } from "../../env.ts";
import { tenantDomains, type DomainRow } from "../../db/domains.ts";
import { secretsKeyring } from "../../lib/dkim-key-box.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import type { DashboardSession } from "../../services/dashboard-sessions.ts";
import { startDkimRotation } from "../../services/dkim-rotation.ts";
import { dohMxQuery, dohTxtQuery } from "../../services/dns-check.ts";
import { requireDomain, verifyDomain, type DomainDeps, type VerifyOutcome } from "../../services/domains.ts";
import { domainView } from "../admin/domains.ts";
import { CsrfField, Page } from "./layout.tsx";
import { can, dashboardPermission, requireCsrf, type DashboardEnv } from "./session.ts";

/** The admin API's dependencies for domain operations, from this deployment's configuration. */
function depsOf(db: DomainDeps["db"], config: Config): DomainDeps {
  return {
    db,
    secrets: secretsKeyring(config),
    devMode: config.DEV_MODE,
    now: Date.now,
    rotationOverlapMs: config.DKIM_ROTATION_OVERLAP_S * 1000,
    bounceMxHost: config.BOUNCE_MX_HOST,
    mxLookup: dohMxQuery(config.DNS_RESOLVER_URL, undefined, config.DNS_TIMEOUT_MS),
  };
}

function DomainPage(props: {
  session: DashboardSession;
  domain: DomainRow;
  bounceMxHost: string | undefined;
  outcome?: VerifyOutcome;
  rotated?: boolean;
}) {
  const { session, outcome } = props;
  const d = domainView(props.domain, Date.now(), props.bounceMxHost);
  const writable = can(session, "POST /app/domains/:id/verify");
  return (
    <Page title={d.domain} session={session} current="/app/domains" scripts={["copy"]}>
      <dl class="meta">
        <dt>Verified</dt>
        <dd id="domain-verified">{d.verified ? "yes" : "no"}</dd>
        <dt>DKIM selector</dt>
        <dd>
          {d.dkim_selector}
          {d.dkim_pending_selector ? ` (rotating to ${d.dkim_pending_selector})` : ""}
        </dd>
        <dt>Last checked</dt>
        <dd>{d.last_checked_at ?? "never"}</dd>
      </dl>
      {outcome ? (
        <section class="notice" aria-live="polite" id="verify-outcome">
          <h2>{outcome.verified ? "Verified: every record was found." : "Not verified yet."}</h2>
          {outcome.errors.length ? (
            <ul>
              {outcome.errors.map((e) => (
                <li>
                  <code>{e.record}</code>: {e.message}
                </li>
              ))}
            </ul>
          ) : null}
        </section>
      ) : null}
      {props.rotated ? (
        <p class="notice" aria-live="polite">
          A new DKIM key was made: publish its record below, then verify; signing switches to it once it is
          found.
        </p>
      ) : null}
      <h2>DNS records to publish</h2>
      <table id="dns-records">
        <thead>
          <tr>
            <th scope="col">Purpose</th>
            <th scope="col">Type</th>
            <th scope="col">Host</th>
            <th scope="col">Value</th>
            <th scope="col">Status</th>
          </tr>
        </thead>
        <tbody>
          {d.dns_records.map((r, i) => (
            <tr>
              <td>{r.purpose}</td>
              <td>{r.type}</td>
              <td>
                <code id={`host-${i}`}>{r.host}</code>{" "}
                <button
                  type="button"
                  class="copy"
                  data-copy={`host-${i}`}
                  aria-label={`Copy host of ${r.purpose}`}
                  hidden
                >
                  Copy
                </button>
              </td>
              <td>
                <code class="secret" id={`value-${i}`}>
                  {r.priority !== undefined ? `${r.priority} ${r.value}` : r.value}
                </code>{" "}
                <button
                  type="button"
                  class="copy"
                  data-copy={`value-${i}`}
                  aria-label={`Copy value of ${r.purpose}`}
                  hidden
                >
                  Copy
                </button>
              </td>
              <td>
                {r.status === "retiring" && r.remove_after ? `retiring (until ${r.remove_after})` : r.status}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {writable ? (
        <div class="actions">
          <form method="post" action={`/app/domains/${encodeURIComponent(d.id)}/verify`}>
            <CsrfField session={session} />
            <button type="submit">Verify DNS records</button>
          </form>
          <form method="post" action={`/app/domains/${encodeURIComponent(d.id)}/rotate-dkim`}>
            <CsrfField session={session} />
            <button type="submit" class="danger">
              Rotate DKIM key
            </button>
          </form>
        </div>
      ) : null}
    </Page>
  );
}

export const domainsPages = new Hono<DashboardEnv>()
  .get("/domains", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const { rows } = await tenantDomains(c.get("db"), session.tenantId).listDomains(null, 100);
    return c.html(
      <Page title="Sender domains" session={session} current="/app/domains">
        {rows.length === 0 ? (
          <p>No sender domains yet: the operator adds them (docs/api/admin.md#sender-domains).</p>
        ) : null}
        <table>
          <thead>
            <tr>
              <th scope="col">Domain</th>
              <th scope="col">Verified</th>
              <th scope="col">DKIM selector</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => (
              <tr>
                <td>
                  <a href={`/app/domains/${encodeURIComponent(d.id)}`}>{d.domain}</a>
                </td>
                <td>{d.verified ? "yes" : "no"}</td>
                <td>{d.dkimSelector}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Page>,
    );
  })
  .get("/domains/:id", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const domain = await requireDomain(c.get("db"), session.tenantId, c.req.param("id"));
    return c.html(
      <DomainPage session={session} domain={domain} bounceMxHost={c.get("config").BOUNCE_MX_HOST} />,
    );
  })
  .post("/domains/:id/verify", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const config = c.get("config");
    const outcome = await verifyDomain(
      depsOf(c.get("db"), config),
      dohTxtQuery(config.DNS_RESOLVER_URL, undefined, config.DNS_TIMEOUT_MS),
      session.tenantId,
      c.req.param("id"),
    );
    // As the admin route does: the send path of this isolate sees the outcome at once.
    catalogCache.forgetDomain(outcome.domain.tenantId, outcome.domain.domain);
    return c.html(
      <DomainPage
        session={session}
        domain={outcome.domain}
        bounceMxHost={config.BOUNCE_MX_HOST}
        outcome={outcome}
      />,
    );
  })
  .post("/domains/:id/rotate-dkim", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const deps = depsOf(c.get("db"), c.get("config"));
    const d = await startDkimRotation(
      deps,
      await requireDomain(deps.db, session.tenantId, c.req.param("id")),
      "rsa",
    );
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.html(
      <DomainPage session={session} domain={d} bounceMxHost={c.get("config").BOUNCE_MX_HOST} rotated />,
    );
  });
