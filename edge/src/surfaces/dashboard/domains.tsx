/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Sender domains (docs/dashboard.md#pages): the tenant's domains, and a domain's page with the DNS
 * records to publish (each with a copy button, an enhancement: the values are plain selectable text),
 * verification against DNS, DKIM rotation, an Ed25519 key beside the RSA one (dual signing, RFC 8463)
 * and adding a domain. Reads and writes go through the admin API's own code (domainView and DomainBody
 * in surfaces/admin/domains.ts, services/domains.ts, services/dkim-rotation.ts), with the same
 * permissions: domains.read to look, domains.write to add, verify, rotate, change the Ed25519 key,
 * change the DMARC policy and report address (the admin API's PATCH: domainPatchOf,
 * updateDomainSettings) or delete the domain, behind a confirmation page where its name is typed
 * (the admin API's DELETE: deleteDomain).
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import type { Config } from "../../env.ts";
import { tenantDomains, type DomainRow } from "../../db/domains.ts";
import { secretsKeyring } from "../../lib/dkim-key-box.ts";
import { catalogCache } from "../../services/catalog-cache.ts";
import type { DashboardSession } from "../../services/dashboard-sessions.ts";
import { isEd25519Selector, ROTATION_ALGORITHMS, startDkimRotation } from "../../services/dkim-rotation.ts";
import { dohMxQuery, dohTxtQuery } from "../../services/dns-check.ts";
import {
  createDomain,
  deleteDomain,
  DKIM_ALGORITHMS,
  removeEd25519Key,
  requireDomain,
  rotateEd25519Key,
  updateDomainSettings,
  verifyDomain,
  type DomainDeps,
  type VerifyOutcome,
} from "../../services/domains.ts";
import { DMARC_POLICIES, DomainBody, domainPatchOf, domainView } from "../admin/domains.ts";
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

type FormBody = Record<string, string | File | (string | File)[]>;

/** A form's fields beyond `allowed` (and the CSRF token) are refused, not ignored, as the API does. */
function refuseUnknownFields(form: FormBody, allowed: readonly string[]): void {
  const extra = Object.keys(form).filter((k) => k !== "_csrf" && !allowed.includes(k));
  if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
}

/** The add-a-domain form, checked by the admin API's own schema (POST /api/admin/domains). */
function parseNewDomain(form: FormBody) {
  refuseUnknownFields(form, ["domain", "dmarc_policy", "dmarc_rua_email", "dkim_algorithm"]);
  const text = (k: string) => {
    const v = form[k];
    if (v === undefined) return undefined;
    if (typeof v !== "string") throw new AppError("invalid_request", `${k} must be given once, as text`);
    return v.trim() === "" ? undefined : v.trim();
  };
  const parsed = DomainBody.omit({ tenant_id: true }).safeParse({
    domain: text("domain") ?? "",
    dmarc_policy: text("dmarc_policy"),
    dmarc_rua_email: text("dmarc_rua_email"),
    dkim_algorithm: text("dkim_algorithm"),
  });
  if (!parsed.success) {
    throw new AppError(
      "invalid_request",
      parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    );
  }
  return parsed.data;
}

function DomainPage(props: {
  session: DashboardSession;
  domain: DomainRow;
  bounceMxHost: string | undefined;
  outcome?: VerifyOutcome;
  notice?: string;
}) {
  const { session, outcome } = props;
  const d = domainView(props.domain, Date.now(), props.bounceMxHost);
  const writable = can(session, "POST /app/domains/:id/verify");
  const base = `/app/domains/${encodeURIComponent(d.id)}`;
  const ed25519 = d.dkim_ed25519_selector;
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
        <dt>Ed25519 (dual signing)</dt>
        <dd id="domain-ed25519">
          {!ed25519
            ? "off: mail carries the RSA signature only"
            : d.dkim_ed25519_verified_at
              ? `on: ${ed25519} signs beside the RSA key (its record was found ${d.dkim_ed25519_verified_at})`
              : `${ed25519} is pending: publish its record below, then verify; it signs once it is found`}
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
      {props.notice ? (
        <p class="notice" aria-live="polite" id="domain-notice">
          {props.notice}
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
          <form method="post" action={`${base}/verify`}>
            <CsrfField session={session} />
            <button type="submit">Verify DNS records</button>
          </form>
          <form method="post" action={`${base}/rotate-dkim`}>
            <CsrfField session={session} />
            <button type="submit" class="danger">
              Rotate DKIM key
            </button>
          </form>
          {ed25519 ? (
            <>
              <form method="post" action={`${base}/rotate-dkim`}>
                <CsrfField session={session} />
                <input type="hidden" name="algorithm" value="ed25519" />
                <button type="submit" class="danger">
                  Rotate Ed25519 key
                </button>
              </form>
              <form method="post" action={`${base}/dkim/ed25519/remove`}>
                <CsrfField session={session} />
                <button type="submit" class="danger">
                  Stop Ed25519 signing
                </button>
              </form>
            </>
          ) : (
            <form method="post" action={`${base}/dkim/ed25519`}>
              <CsrfField session={session} />
              <button type="submit">Add an Ed25519 key (dual signing)</button>
            </form>
          )}
        </div>
      ) : null}
      <h2>DMARC</h2>
      {writable ? (
        <form method="post" action={`${base}/dmarc`} id="dmarc-settings">
          <CsrfField session={session} />
          <p>
            <label for="domain-dmarc-policy">Policy</label>{" "}
            <select id="domain-dmarc-policy" name="dmarc_policy">
              {DMARC_POLICIES.map((p) => (
                <option value={p} selected={p === d.dmarc_policy}>
                  {p}
                </option>
              ))}
            </select>
          </p>
          <p>
            <label for="domain-dmarc-rua">Aggregate reports to (empty: no rua=)</label>{" "}
            <input
              id="domain-dmarc-rua"
              name="dmarc_rua_email"
              type="email"
              value={d.dmarc_rua_email ?? ""}
              autocomplete="off"
            />
          </p>
          <button type="submit">Save DMARC settings</button>
        </form>
      ) : (
        <dl class="meta" id="dmarc-settings">
          <dt>Policy</dt>
          <dd>{d.dmarc_policy}</dd>
          <dt>Aggregate reports to</dt>
          <dd>{d.dmarc_rua_email ?? "none"}</dd>
        </dl>
      )}
      {writable ? (
        <p>
          <a href={`${base}/delete`} class="danger" id="delete-domain">
            Delete this domain…
          </a>
        </p>
      ) : null}
    </Page>
  );
}

/** The confirmation step of a delete: the domain's name must be typed (docs/dashboard.md#pages). */
function DeleteDomainPage(props: { session: DashboardSession; domain: DomainRow }) {
  const { session, domain: d } = props;
  const base = `/app/domains/${encodeURIComponent(d.id)}`;
  return (
    <Page title={`Delete ${d.domain}?`} session={session} current="/app/domains">
      <p>
        Deleting the domain deletes its DKIM keys at once: live mail from <code>{d.domain}</code> is refused
        from then on, and adding it again makes new keys whose records must be published anew. It cannot be
        undone.
      </p>
      <form method="post" action={`${base}/delete`} id="confirm-delete">
        <CsrfField session={session} />
        <p>
          <label for="confirm-domain">
            Type the domain's name, <code>{d.domain}</code>, to confirm
          </label>{" "}
          <input id="confirm-domain" name="confirm_domain" required autocomplete="off" />
        </p>
        <button type="submit" class="danger">
          Delete the domain
        </button>{" "}
        <a href={base}>Cancel</a>
      </form>
    </Page>
  );
}

function AddDomainForm(props: { session: DashboardSession }) {
  return (
    <form method="post" action="/app/domains" id="add-domain">
      <h2>Add a domain</h2>
      <CsrfField session={props.session} />
      <p>
        <label for="domain-name">Domain</label>{" "}
        <input id="domain-name" name="domain" required placeholder="mail.example.com" autocomplete="off" />
      </p>
      <p>
        <label for="dmarc-policy">DMARC policy</label>{" "}
        <select id="dmarc-policy" name="dmarc_policy">
          {DMARC_POLICIES.map((p) => (
            <option value={p}>{p}</option>
          ))}
        </select>
      </p>
      <p>
        <label for="dmarc-rua">DMARC reports to (optional)</label>{" "}
        <input id="dmarc-rua" name="dmarc_rua_email" type="email" autocomplete="off" />
      </p>
      <p>
        <label for="dkim-algorithm">DKIM signing</label>{" "}
        <select id="dkim-algorithm" name="dkim_algorithm">
          {DKIM_ALGORITHMS.map((a) => (
            <option value={a}>
              {a === "rsa" ? "RSA (rsa-sha256)" : "Dual (rsa-sha256 and ed25519-sha256)"}
            </option>
          ))}
        </select>
      </p>
      <button type="submit">Add domain</button>
    </form>
  );
}

export const domainsPages = new Hono<DashboardEnv>()
  .get("/domains", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const { rows } = await tenantDomains(c.get("db"), session.tenantId).listDomains(null, 100);
    return c.html(
      <Page title="Sender domains" session={session} current="/app/domains">
        {rows.length === 0 ? <p>No sender domains yet.</p> : null}
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
        {can(session, "POST /app/domains") ? <AddDomainForm session={session} /> : null}
      </Page>,
    );
  })
  .post("/domains", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const config = c.get("config");
    const input = parseNewDomain(await c.req.parseBody({ all: true }));
    const d = await createDomain(depsOf(c.get("db"), config), session.tenantId, {
      domain: input.domain,
      dmarcPolicy: input.dmarc_policy,
      dmarcRuaEmail: input.dmarc_rua_email,
      dkimAlgorithm: input.dkim_algorithm,
    });
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.html(
      <DomainPage
        session={session}
        domain={d}
        bounceMxHost={config.BOUNCE_MX_HOST}
        notice="Domain added: publish the records below, then verify. It sends live mail once verified."
      />,
      201,
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
    const form = await c.req.parseBody({ all: true });
    refuseUnknownFields(form, ["algorithm"]);
    const algorithm = form.algorithm ?? "rsa";
    if (typeof algorithm !== "string" || !ROTATION_ALGORITHMS.includes(algorithm as never)) {
      throw new AppError("invalid_request", "algorithm must be rsa (the default) or ed25519");
    }
    const deps = depsOf(c.get("db"), c.get("config"));
    const d = await startDkimRotation(
      deps,
      await requireDomain(deps.db, session.tenantId, c.req.param("id")),
      algorithm as (typeof ROTATION_ALGORITHMS)[number],
    );
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.html(
      <DomainPage
        session={session}
        domain={d}
        bounceMxHost={c.get("config").BOUNCE_MX_HOST}
        notice={
          `A new DKIM key was made (${isEd25519Selector(d.dkimNextSelector) ? "Ed25519" : "RSA"}, selector ` +
          `${d.dkimNextSelector}): publish its record below, then verify; signing switches to it once it is found.`
        }
      />,
    );
  })
  .post("/domains/:id/dkim/ed25519", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    refuseUnknownFields(await c.req.parseBody({ all: true }), []);
    const d = await rotateEd25519Key(
      depsOf(c.get("db"), c.get("config")),
      session.tenantId,
      c.req.param("id"),
    );
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.html(
      <DomainPage
        session={session}
        domain={d}
        bounceMxHost={c.get("config").BOUNCE_MX_HOST}
        notice={
          d.dkimEd25519VerifiedAt === null
            ? `An Ed25519 key was made (${d.dkimEd25519Selector}): publish its record below, then verify; ` +
              "mail carries both signatures once it is found, and the RSA signature alone until then."
            : `An Ed25519 key was made (${d.dkimEd25519Selector}): mail carries both signatures.`
        }
      />,
    );
  })
  .post("/domains/:id/dkim/ed25519/remove", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    refuseUnknownFields(await c.req.parseBody({ all: true }), []);
    const d = await removeEd25519Key(
      depsOf(c.get("db"), c.get("config")),
      session.tenantId,
      c.req.param("id"),
    );
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.html(
      <DomainPage
        session={session}
        domain={d}
        bounceMxHost={c.get("config").BOUNCE_MX_HOST}
        notice="The Ed25519 key was deleted: mail accepted from now on carries the RSA signature only. Its DNS record may be removed."
      />,
    );
  })
  .post("/domains/:id/dmarc", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const form = await c.req.parseBody({ all: true });
    refuseUnknownFields(form, ["dmarc_policy", "dmarc_rua_email"]);
    const text = (k: string) => {
      const v = form[k];
      if (v === undefined) return undefined;
      if (typeof v !== "string") throw new AppError("invalid_request", `${k} must be given once, as text`);
      return v.trim();
    };
    const policy = text("dmarc_policy");
    const rua = text("dmarc_rua_email");
    // The admin API's PATCH body: an empty report address drops rua= (null), as the API's null does.
    const patch = domainPatchOf({
      ...(policy !== undefined ? { dmarc_policy: policy } : {}),
      ...(rua !== undefined ? { dmarc_rua_email: rua === "" ? null : rua } : {}),
    });
    const d = await updateDomainSettings(c.get("db"), session.tenantId, c.req.param("id"), patch);
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.html(
      <DomainPage
        session={session}
        domain={d}
        bounceMxHost={c.get("config").BOUNCE_MX_HOST}
        notice="DMARC settings saved: publish the DMARC record below in place of the old one, then verify."
      />,
    );
  })
  .get("/domains/:id/delete", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const domain = await requireDomain(c.get("db"), session.tenantId, c.req.param("id"));
    return c.html(<DeleteDomainPage session={session} domain={domain} />);
  })
  .post("/domains/:id/delete", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const domain = await requireDomain(c.get("db"), session.tenantId, c.req.param("id"));
    const form = await c.req.parseBody({ all: true });
    refuseUnknownFields(form, ["confirm_domain"]);
    const typed = form.confirm_domain;
    if (typeof typed !== "string" || typed.trim().toLowerCase() !== domain.domain.toLowerCase()) {
      throw new AppError(
        "invalid_request",
        `Type the domain's name, ${domain.domain}, to delete it: nothing was deleted`,
      );
    }
    const d = await deleteDomain(c.get("db"), session.tenantId, domain.id);
    // As the admin route does: this isolate's send path refuses the domain at once.
    catalogCache.forgetDomain(d.tenantId, d.domain);
    return c.redirect("/app/domains", 303);
  });
