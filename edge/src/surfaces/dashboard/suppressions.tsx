/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Suppressions (docs/dashboard.md#pages): one of SendGrid's five lists at a time, newest first, with
 * an address search, and a remove button per address — the same repository as /v3/suppression
 * (db/suppressions.ts) and the same permissions (suppressions.read to look, suppressions.write to
 * remove). Global unsubscribes are only listed: SendGrid changes them through its ASM routes.
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import { SUPPRESSION_LISTS, type SuppressionList } from "../../db/schema.ts";
import { tenantSuppressions } from "../../db/suppressions.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import { CsrfField, Page } from "./layout.tsx";
import { can, dashboardPermission, requireCsrf, type DashboardEnv } from "./session.ts";

const PAGE = 100;

function listOf(value: string | undefined): SuppressionList {
  const list = value ?? "bounces";
  if (!(SUPPRESSION_LISTS as readonly string[]).includes(list)) {
    throw new AppError("invalid_request", `list must be one of ${SUPPRESSION_LISTS.join(", ")}`);
  }
  return list as SuppressionList;
}

export const suppressionsPages = new Hono<DashboardEnv>()
  .get("/suppressions", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const q = c.req.query();
    const extra = Object.keys(q).filter((k) => k !== "list" && k !== "email");
    if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
    const list = listOf(q.list);
    const email = q.email?.trim() || undefined;
    const rows = await tenantSuppressions(c.get("db"), session.tenantId).listSuppressions(list, {
      limit: PAGE,
      offset: 0,
      ...(email ? { emailPrefix: email } : {}),
    });
    const removable = list !== "unsubscribes" && can(session, "POST /app/suppressions/:list/remove");
    return c.html(
      <Page title="Suppressions" session={session} current="/app/suppressions">
        <form method="get" action="/app/suppressions" class="filters" role="search">
          <label>
            List
            <select name="list">
              {SUPPRESSION_LISTS.map((l) => (
                <option value={l} selected={l === list}>
                  {l}
                </option>
              ))}
            </select>
          </label>
          <label>
            Address (or its start)
            <input type="text" name="email" value={email ?? ""} />
          </label>
          <button type="submit">Show</button>
        </form>
        <table id="suppressions">
          <caption>
            {list}:{" "}
            {rows.length === PAGE
              ? `the newest ${PAGE}`
              : `${rows.length} address${rows.length === 1 ? "" : "es"}`}
          </caption>
          <thead>
            <tr>
              <th scope="col">Address</th>
              <th scope="col">Added (UTC)</th>
              <th scope="col">Reason</th>
              {removable ? (
                <th scope="col">
                  <span class="skip">Actions</span>
                </th>
              ) : null}
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr>
                <td>{r.email}</td>
                <td>{iso(r.createdAt)}</td>
                <td>{r.reason ?? ""}</td>
                {removable ? (
                  <td>
                    <form method="post" action={`/app/suppressions/${list}/remove`}>
                      <CsrfField session={session} />
                      <input type="hidden" name="email" value={r.email} />
                      <button type="submit" class="danger" aria-label={`Remove ${r.email}`}>
                        Remove
                      </button>
                    </form>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </Page>,
    );
  })
  .post("/suppressions/:list/remove", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const list = c.req.param("list");
    if (!(SUPPRESSION_LISTS as readonly string[]).includes(list) || list === "unsubscribes") {
      throw new AppError("not_found", `No such list to remove from: ${list}`);
    }
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf" && k !== "email");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const email = typeof form.email === "string" ? form.email : "";
    const n = await tenantSuppressions(c.get("db"), session.tenantId).deleteSuppressions(
      list as SuppressionList,
      [email],
    );
    if (n === 0) throw new AppError("not_found", `The address is not on the ${list} list`);
    return c.redirect(`/app/suppressions?list=${list}`, 303);
  });
