/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Suppressions (docs/dashboard.md#pages): one of SendGrid's five lists at a time, newest first, with
 * an address search, "Add an address" and a remove button per address — the same repository and
 * checks as /v3/suppression (db/suppressions.ts, parseManualAdd) and the same permissions
 * (suppressions.read to look, suppressions.write to change). Global unsubscribes are added and
 * removed through the calls of SendGrid's ASM routes (/v3/asm/suppressions/global); the
 * unsubscribe groups have their own pages (asm-groups.tsx).
 * Pages of 100 with offset links; a list (or its filtered part) exports as SendGrid's CSV, and a CSV
 * imports into a list (suppressions-csv.ts) through the same repository calls as the API: the
 * list's addSuppressions, or for global unsubscribes the ASM route's unsubscribeGloballyMany.
 */
import { Hono } from "hono";
import { AppError } from "../../../../shared/errors.ts";
import { SUPPRESSION_LISTS, type SuppressionList } from "../../db/schema.ts";
import { tenantSuppressions } from "../../db/suppressions.ts";
import { isoSeconds as iso } from "../../lib/time.ts";
import type { DashboardSession } from "../../services/dashboard-sessions.ts";
import { emailAt } from "../sendgrid/suppression-http.ts";
import { toCsv } from "../sendgrid/suppression-csv.ts";
import { ADD_FIELDS, parseManualAdd } from "../sendgrid/suppressions.ts";
import {
  offsetOf,
  refuseUnknownFields,
  SuppressionsNav,
  textField,
  withFieldMessages,
} from "./asm-groups.tsx";
import { CsrfField, Page } from "./layout.tsx";
import { MAX_IMPORT_BYTES, MAX_IMPORT_ROWS, parseImport } from "./suppressions-csv.ts";
import { can, dashboardPermission, requireCsrf, type DashboardEnv } from "./session.ts";

const PAGE = 100;
const EXPORT_PAGE = 1000;

/** The form inputs of "Add an address" per list: the fields POST /v3/suppression/{list} takes. */
const ADD_INPUTS: Record<SuppressionList, readonly string[]> = {
  ...ADD_FIELDS,
  unsubscribes: ["email"],
};

function pageLink(list: string, email: string | undefined, offset: number): string {
  const q = new URLSearchParams({ list });
  if (email) q.set("email", email);
  if (offset > 0) q.set("offset", String(offset));
  return `/app/suppressions?${q}`;
}

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
    const extra = Object.keys(q).filter((k) => k !== "list" && k !== "email" && k !== "offset");
    if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
    const list = listOf(q.list);
    const email = q.email?.trim() || undefined;
    const offset = offsetOf(q.offset);
    const fetched = await tenantSuppressions(c.get("db"), session.tenantId).listSuppressions(list, {
      limit: PAGE + 1,
      offset,
      ...(email ? { emailPrefix: email } : {}),
    });
    const more = fetched.length > PAGE;
    const rows = fetched.slice(0, PAGE);
    const removable = can(session, "POST /app/suppressions/:list/remove");
    const addable = can(session, "POST /app/suppressions/:list/add");
    const importable = can(session, "POST /app/suppressions/:list/import");
    const exportHref = `/app/suppressions/${list}/export${email ? `?${new URLSearchParams({ email })}` : ""}`;
    return c.html(
      <Page title="Suppressions" session={session} current="/app/suppressions">
        <SuppressionsNav current="lists" />
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
            {rows.length === 0 ? "no addresses" : `${offset + 1}–${offset + rows.length}, newest first`}
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
        <nav aria-label="Pages" class="pager">
          {offset > 0 ? (
            <a rel="prev" href={pageLink(list, email, Math.max(0, offset - PAGE))}>
              Newer
            </a>
          ) : null}{" "}
          {more ? (
            <a rel="next" href={pageLink(list, email, offset + PAGE)}>
              Older
            </a>
          ) : null}
        </nav>
        {addable ? <AddAddressForm session={session} list={list} /> : null}
        <p>
          <a href={exportHref} download={`${list}.csv`}>
            Export {email ? "these addresses" : `the ${list} list`} as CSV
          </a>
        </p>
        {importable ? (
          <form method="post" action={`/app/suppressions/${list}/import`} enctype="multipart/form-data">
            <CsrfField session={session} />
            <label>
              Import a CSV into {list} (one address per line, or a list's CSV export; at most{" "}
              {MAX_IMPORT_ROWS.toLocaleString("en-US")} addresses, 1 MiB)
              <input type="file" name="file" accept=".csv,text/csv,text/plain" required />
            </label>
            <button type="submit">Import</button>
          </form>
        ) : null}
      </Page>,
    );
  })
  .get("/suppressions/:list/export", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const list = listOf(c.req.param("list"));
    const q = c.req.query();
    const extra = Object.keys(q).filter((k) => k !== "email");
    if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
    const email = q.email?.trim() || undefined;
    const repo = tenantSuppressions(c.get("db"), session.tenantId);
    const encoder = new TextEncoder();
    let after: { createdAt: number; email: string } | null = null;
    let first = true;
    // Page by page as the browser reads, as the API's export does: a long list is never held whole.
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const rows = await repo.exportPage(list, after, EXPORT_PAGE, email ? { emailPrefix: email } : {});
        controller.enqueue(encoder.encode(toCsv(list, rows, first)));
        first = false;
        if (rows.length < EXPORT_PAGE) controller.close();
        else after = { createdAt: rows.at(-1)!.createdAt, email: rows.at(-1)!.email };
      },
    });
    return new Response(body, {
      headers: {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": `attachment; filename="${list}.csv"`,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
      },
    });
  })
  .post("/suppressions/:list/import", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const list = c.req.param("list");
    if (!(SUPPRESSION_LISTS as readonly string[]).includes(list)) {
      throw new AppError("not_found", `No such list: ${list}`);
    }
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf" && k !== "file");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const file = form.file;
    if (!(file instanceof File)) throw new AppError("invalid_request", "Choose a CSV file to import");
    if (file.size > MAX_IMPORT_BYTES)
      throw new AppError("payload_too_large", `The file is larger than 1 MiB (${file.size} bytes)`);
    const now = Date.now();
    const parsed = parseImport(list as SuppressionList, await file.text(), now);
    const repo = tenantSuppressions(c.get("db"), session.tenantId);
    if (list === "unsubscribes") {
      // The ASM route's call; an address already unsubscribed keeps its first time.
      const byTime = new Map<number, string[]>();
      for (const r of parsed.rows) byTime.set(r.createdAt, [...(byTime.get(r.createdAt) ?? []), r.email]);
      for (const [at, emails] of byTime) await repo.unsubscribeGloballyMany(emails, at);
    } else await repo.addSuppressions(list as SuppressionList, parsed.rows);
    return c.html(
      <Page title="Suppressions import" session={session} current="/app/suppressions">
        <p role="status" id="import-result">
          {parsed.rows.length} address{parsed.rows.length === 1 ? "" : "es"} added to {list}
          {parsed.errors.length
            ? `; ${parsed.errors.length} row${parsed.errors.length === 1 ? "" : "s"} not imported (below)`
            : ""}
          .
        </p>
        {parsed.errors.length ? (
          <table id="import-errors">
            <caption>Rows not imported</caption>
            <thead>
              <tr>
                <th scope="col">Line</th>
                <th scope="col">Address</th>
                <th scope="col">Problem</th>
              </tr>
            </thead>
            <tbody>
              {parsed.errors.map((e) => (
                <tr>
                  <td>{e.line}</td>
                  <td>{e.value}</td>
                  <td>{e.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        <p>
          <a href={pageLink(list, undefined, 0)}>Back to {list}</a>
        </p>
      </Page>,
    );
  })
  .post("/suppressions/:list/remove", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const list = c.req.param("list");
    if (!(SUPPRESSION_LISTS as readonly string[]).includes(list)) {
      throw new AppError("not_found", `No such list to remove from: ${list}`);
    }
    const form = await c.req.parseBody({ all: true });
    const extra = Object.keys(form).filter((k) => k !== "_csrf" && k !== "email");
    if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
    const email = typeof form.email === "string" ? form.email : "";
    // The call DELETE /v3/suppression/{list}/{email} makes, or for global unsubscribes the one of
    // DELETE /v3/asm/suppressions/global/{email}: the same repository call on that list.
    const n = await tenantSuppressions(c.get("db"), session.tenantId).deleteSuppressions(
      list as SuppressionList,
      [email],
    );
    if (n === 0) throw new AppError("not_found", `The address is not on the ${list} list`);
    return c.redirect(`/app/suppressions?list=${list}`, 303);
  })
  .post("/suppressions/:list/add", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const list = c.req.param("list");
    if (!(SUPPRESSION_LISTS as readonly string[]).includes(list)) {
      throw new AppError("not_found", `No such list: ${list}`);
    }
    const form = await c.req.parseBody({ all: true });
    refuseUnknownFields(form, ADD_INPUTS[list as SuppressionList]);
    const repo = tenantSuppressions(c.get("db"), session.tenantId);
    const now = Date.now();
    let email: string;
    if (list === "unsubscribes") {
      // The call POST /v3/asm/suppressions/global makes: an address already there keeps its first time.
      email = await withFieldMessages(() => emailAt((textField(form, "email") ?? "").trim(), "email"));
      await repo.unsubscribeGloballyMany([email], now);
    } else {
      // POST /v3/suppression/{list}'s body and checks; an empty optional input is not sent.
      const body: Record<string, string> = {};
      for (const k of ADD_INPUTS[list as SuppressionList]) {
        const v = textField(form, k)?.trim();
        if (v) body[k] = v;
      }
      const entry = await withFieldMessages(() =>
        parseManualAdd(list as Exclude<SuppressionList, "unsubscribes">, body, now),
      );
      await repo.addSuppressions(list as SuppressionList, [entry]);
      email = entry.email;
    }
    return c.redirect(`/app/suppressions?${new URLSearchParams({ list, email })}`, 303);
  });

const ADD_LABELS: Record<string, string> = {
  email: "Address",
  reason: "Reason (optional)",
  status: "Status (optional, an enhanced code such as 5.1.1)",
  bounce_type: "Bounce type",
  ip: "IP address (optional)",
};

/** "Add an address" for one list, with the optional fields the API takes for it. */
function AddAddressForm(props: { session: DashboardSession; list: SuppressionList }) {
  const { list } = props;
  return (
    <form method="post" action={`/app/suppressions/${list}/add`} id="add-address">
      <h2>Add an address to {list}</h2>
      <CsrfField session={props.session} />
      {ADD_INPUTS[list].map((k) => (
        <p>
          <label for={`add-${k}`}>{ADD_LABELS[k] ?? k}</label>{" "}
          {k === "bounce_type" ? (
            <select id={`add-${k}`} name={k}>
              {["hard", "soft", "block"].map((t) => (
                <option value={t}>{t}</option>
              ))}
            </select>
          ) : (
            <input
              id={`add-${k}`}
              name={k}
              type={k === "email" ? "email" : "text"}
              required={k === "email"}
              autocomplete="off"
            />
          )}
        </p>
      ))}
      <button type="submit">Add</button>
    </form>
  );
}
