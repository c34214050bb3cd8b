/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
/**
 * Unsubscribe groups on the suppressions pages (docs/dashboard.md#pages): SendGrid's ASM groups as
 * `/v3/asm/groups` answers them (docs/api/sendgrid.md#unsubscribe-groups) — the tenant's groups with
 * their number of unsubscribed addresses, create, edit, delete behind a confirmation page, and a
 * group's page listing its addresses (an address-prefix search, pages of 100) with "Add addresses"
 * (one per line, the CSV import's checks and per-line errors) and a remove button per address.
 * Every read and write goes through the code the ASM routes call (createAsmGroup / updateAsmGroup in
 * surfaces/sendgrid/asm.ts, db/suppressions.ts), with their permissions: suppressions.read to look,
 * suppressions.write to change. Another tenant's group id is a 404 like one that exists nowhere.
 */
import { Hono } from "hono";
import { AppError, isAppError } from "../../../../shared/errors.ts";
import { type AsmGroupRow, tenantSuppressions } from "../../db/suppressions.ts";
import type { DashboardSession } from "../../services/dashboard-sessions.ts";
import { createAsmGroup, MAX_GROUP_DESCRIPTION, MAX_GROUP_NAME, updateAsmGroup } from "../sendgrid/asm.ts";
import { CsrfField, Page } from "./layout.tsx";
import { MAX_IMPORT_BYTES, MAX_IMPORT_ROWS, parseAddressLines } from "./suppressions-csv.ts";
import {
  can,
  dashboardPermission,
  requireCsrf,
  type DashboardContext,
  type DashboardEnv,
} from "./session.ts";

const PAGE = 100;
const MAX_OFFSET = 10_000_000;

type FormBody = Record<string, string | File | (string | File)[]>;

/**
 * The API's 400s carry their reasons in `fields` (SendGrid's errors[]) under the message "Bad
 * Request": a page shows the reasons themselves.
 */
export async function withFieldMessages<T>(run: () => Promise<T> | T): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (isAppError(err) && err.status < 500 && err.fields.length > 0)
      throw new AppError(err.code, err.fields.map((f) => f.message).join(" "));
    throw err;
  }
}

/** The form's fields beyond `allowed` (and the CSRF token) are refused, not ignored. */
export function refuseUnknownFields(form: FormBody, allowed: readonly string[]): void {
  const extra = Object.keys(form).filter((k) => k !== "_csrf" && !allowed.includes(k));
  if (extra.length) throw new AppError("invalid_request", `Unknown form field: ${extra.join(", ")}`);
}

/** One text field given at most once; undefined when absent. */
export function textField(form: FormBody, name: string): string | undefined {
  const v = form[name];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new AppError("invalid_request", `${name} must be given once, as text`);
  return v;
}

export function offsetOf(value: string | undefined): number {
  if (value === undefined) return 0;
  const n = /^\d{1,8}$/.test(value) ? Number(value) : NaN;
  if (!(n <= MAX_OFFSET))
    throw new AppError("invalid_request", `offset must be a whole number up to ${MAX_OFFSET}`);
  return n;
}

/** A group id as the ASM routes take it: digits, else no such group. */
function groupIdOf(raw: string | undefined): number {
  if (!raw || !/^\d{1,15}$/.test(raw)) throw new AppError("not_found", "No such unsubscribe group");
  return Number(raw);
}

async function ownGroup(c: DashboardContext): Promise<AsmGroupRow> {
  const g = await tenantSuppressions(c.get("db"), c.get("session").tenantId).getGroup(
    groupIdOf(c.req.param("id")),
  );
  if (!g) throw new AppError("not_found", "No such unsubscribe group");
  return g;
}

/** The create and edit forms as the API's JSON body: name, description, is_default (a checkbox). */
function groupBodyOf(form: FormBody): Record<string, unknown> {
  refuseUnknownFields(form, ["name", "description", "is_default"]);
  const isDefault = textField(form, "is_default");
  if (isDefault !== undefined && isDefault !== "true")
    throw new AppError("invalid_request", "is_default is a checkbox: true when ticked, absent otherwise");
  return {
    name: (textField(form, "name") ?? "").trim(),
    description: (textField(form, "description") ?? "").trim(),
    is_default: isDefault === "true",
  };
}

const groupHref = (id: number) => `/app/suppressions/groups/${id}`;

function pageLink(id: number, email: string | undefined, offset: number): string {
  const q = new URLSearchParams();
  if (email) q.set("email", email);
  if (offset > 0) q.set("offset", String(offset));
  const s = q.toString();
  return `${groupHref(id)}${s ? `?${s}` : ""}`;
}

/** The links between the five lists and the groups (the suppressions pages' own navigation). */
export function SuppressionsNav(props: { current: "lists" | "groups" }) {
  return (
    <nav aria-label="Suppressions" class="pager">
      {props.current === "groups" ? (
        <a href="/app/suppressions">Suppression lists</a>
      ) : (
        <a href="/app/suppressions/groups">Unsubscribe groups</a>
      )}
    </nav>
  );
}

function GroupFields(props: { group?: AsmGroupRow; prefix: string }) {
  const g = props.group;
  return (
    <>
      <p>
        <label for={`${props.prefix}-name`}>Name (at most {MAX_GROUP_NAME} characters)</label>{" "}
        <input
          id={`${props.prefix}-name`}
          name="name"
          required
          maxlength={MAX_GROUP_NAME}
          value={g?.name ?? ""}
          autocomplete="off"
        />
      </p>
      <p>
        <label for={`${props.prefix}-description`}>
          Description (optional, at most {MAX_GROUP_DESCRIPTION} characters)
        </label>{" "}
        <input
          id={`${props.prefix}-description`}
          name="description"
          maxlength={MAX_GROUP_DESCRIPTION}
          value={g?.description ?? ""}
          autocomplete="off"
        />
      </p>
      <p>
        <label class="check">
          <input type="checkbox" name="is_default" value="true" checked={g?.isDefault ?? false} /> The default
          group (only one group is; ticking this clears it on the others)
        </label>
      </p>
    </>
  );
}

function GroupPage(props: {
  session: DashboardSession;
  group: AsmGroupRow & { unsubscribes: number };
  emails: string[];
  email: string | undefined;
  offset: number;
  more: boolean;
}) {
  const { session, group: g, emails, email, offset } = props;
  const writable = can(session, "POST /app/suppressions/groups/:id/edit");
  return (
    <Page title={`Unsubscribe group ${g.name}`} session={session} current="/app/suppressions">
      <SuppressionsNav current="groups" />
      <dl class="meta">
        <dt>Id</dt>
        <dd id="group-id">{g.id}</dd>
        <dt>Description</dt>
        <dd>{g.description || "none"}</dd>
        <dt>Default group</dt>
        <dd id="group-default">{g.isDefault ? "yes" : "no"}</dd>
        <dt>Unsubscribed addresses</dt>
        <dd id="group-count">{g.unsubscribes}</dd>
      </dl>
      <form method="get" action={groupHref(g.id)} class="filters" role="search">
        <label>
          Address (or its start)
          <input type="text" name="email" value={email ?? ""} />
        </label>
        <button type="submit">Show</button>
      </form>
      <table id="group-suppressions">
        <caption>
          Unsubscribed from {g.name}:{" "}
          {emails.length === 0 ? "no addresses" : `${offset + 1}–${offset + emails.length}, oldest first`}
        </caption>
        <thead>
          <tr>
            <th scope="col">Address</th>
            {writable ? (
              <th scope="col">
                <span class="skip">Actions</span>
              </th>
            ) : null}
          </tr>
        </thead>
        <tbody>
          {emails.map((e) => (
            <tr>
              <td>{e}</td>
              {writable ? (
                <td>
                  <form method="post" action={`${groupHref(g.id)}/remove`}>
                    <CsrfField session={session} />
                    <input type="hidden" name="email" value={e} />
                    <button type="submit" class="danger" aria-label={`Remove ${e}`}>
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
          <a rel="prev" href={pageLink(g.id, email, Math.max(0, offset - PAGE))}>
            Earlier
          </a>
        ) : null}{" "}
        {props.more ? (
          <a rel="next" href={pageLink(g.id, email, offset + PAGE)}>
            Later
          </a>
        ) : null}
      </nav>
      {writable ? (
        <>
          <form method="post" action={`${groupHref(g.id)}/add`} id="add-addresses">
            <h2>Add addresses</h2>
            <CsrfField session={session} />
            <p>
              <label for="group-emails">
                Addresses to unsubscribe from {g.name}, one per line (at most{" "}
                {MAX_IMPORT_ROWS.toLocaleString("en-US")})
              </label>
            </p>
            <p>
              <textarea id="group-emails" name="emails" rows={6} cols={60} required></textarea>
            </p>
            <button type="submit">Add addresses</button>
          </form>
          <form method="post" action={`${groupHref(g.id)}/edit`} id="edit-group">
            <h2>Edit the group</h2>
            <CsrfField session={session} />
            <GroupFields group={g} prefix="edit" />
            <button type="submit">Save</button>
          </form>
          <p>
            <a href={`${groupHref(g.id)}/delete`} class="danger" id="delete-group">
              Delete this group…
            </a>
          </p>
        </>
      ) : null}
    </Page>
  );
}

export const asmGroupsPages = new Hono<DashboardEnv>()
  .get("/suppressions/groups", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const extra = Object.keys(c.req.query());
    if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
    const groups = await tenantSuppressions(c.get("db"), session.tenantId).listGroups();
    return c.html(
      <Page title="Unsubscribe groups" session={session} current="/app/suppressions">
        <SuppressionsNav current="groups" />
        {groups.length === 0 ? <p>No unsubscribe groups yet.</p> : null}
        <table id="groups">
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Name</th>
              <th scope="col">Description</th>
              <th scope="col">Default</th>
              <th scope="col" class="num">
                Unsubscribed
              </th>
            </tr>
          </thead>
          <tbody>
            {groups.map((g) => (
              <tr>
                <td>{g.id}</td>
                <td>
                  <a href={groupHref(g.id)}>{g.name}</a>
                </td>
                <td>{g.description}</td>
                <td>{g.isDefault ? "yes" : "no"}</td>
                <td class="num">{g.unsubscribes}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {can(session, "POST /app/suppressions/groups") ? (
          <form method="post" action="/app/suppressions/groups" id="create-group">
            <h2>Create a group</h2>
            <CsrfField session={session} />
            <GroupFields prefix="new" />
            <button type="submit">Create group</button>
          </form>
        ) : null}
      </Page>,
    );
  })
  .post("/suppressions/groups", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const body = groupBodyOf(await c.req.parseBody({ all: true }));
    const g = await withFieldMessages(() => createAsmGroup(c.get("db"), session.tenantId, body, Date.now()));
    return c.redirect(groupHref(g.id), 303);
  })
  .get("/suppressions/groups/:id", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const id = groupIdOf(c.req.param("id"));
    const q = c.req.query();
    const extra = Object.keys(q).filter((k) => k !== "email" && k !== "offset");
    if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
    const email = q.email?.trim() || undefined;
    if (email && email.length > 320)
      throw new AppError("invalid_request", "email must be 1 to 320 characters");
    const offset = offsetOf(q.offset);
    const repo = tenantSuppressions(c.get("db"), session.tenantId);
    const group = await repo.getGroupWithCount(id);
    if (!group) throw new AppError("not_found", "No such unsubscribe group");
    const fetched = await repo.listGroupSuppressions(id, {
      limit: PAGE + 1,
      offset,
      ...(email ? { emailPrefix: email } : {}),
    });
    return c.html(
      <GroupPage
        session={session}
        group={group}
        emails={fetched.slice(0, PAGE)}
        email={email}
        offset={offset}
        more={fetched.length > PAGE}
      />,
    );
  })
  .post("/suppressions/groups/:id/edit", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const g = await ownGroup(c);
    const body = groupBodyOf(await c.req.parseBody({ all: true }));
    await withFieldMessages(() => updateAsmGroup(c.get("db"), session.tenantId, g, body));
    return c.redirect(groupHref(g.id), 303);
  })
  .get("/suppressions/groups/:id/delete", dashboardPermission(), async (c) => {
    const session = c.get("session");
    const extra = Object.keys(c.req.query());
    if (extra.length) throw new AppError("invalid_request", `Unknown parameter: ${extra.join(", ")}`);
    const g = await tenantSuppressions(c.get("db"), session.tenantId).getGroupWithCount(
      groupIdOf(c.req.param("id")),
    );
    if (!g) throw new AppError("not_found", "No such unsubscribe group");
    return c.html(
      <Page title={`Delete the group ${g.name}?`} session={session} current="/app/suppressions">
        <p>
          Deleting the group also deletes its {g.unsubscribes} unsubscribed address
          {g.unsubscribes === 1 ? "" : "es"}: mail sent with its <code>asm.group_id</code> is refused
          afterwards (400). It cannot be undone.
        </p>
        <form method="post" action={`${groupHref(g.id)}/delete`} id="confirm-delete">
          <CsrfField session={session} />
          <p>
            <label class="check">
              <input type="checkbox" name="confirm" value="yes" required /> Delete {g.name} (id {g.id}) and
              its unsubscribed addresses
            </label>
          </p>
          <button type="submit" class="danger">
            Delete the group
          </button>{" "}
          <a href={groupHref(g.id)}>Cancel</a>
        </form>
      </Page>,
    );
  })
  .post("/suppressions/groups/:id/delete", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const g = await ownGroup(c);
    const form = await c.req.parseBody({ all: true });
    refuseUnknownFields(form, ["confirm"]);
    if (textField(form, "confirm") !== "yes")
      throw new AppError("invalid_request", "Tick the confirmation to delete the group: nothing was deleted");
    if (!(await tenantSuppressions(c.get("db"), session.tenantId).deleteGroup(g.id)))
      throw new AppError("not_found", "No such unsubscribe group");
    return c.redirect("/app/suppressions/groups", 303);
  })
  .post("/suppressions/groups/:id/add", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const g = await ownGroup(c);
    const form = await c.req.parseBody({ all: true });
    refuseUnknownFields(form, ["emails"]);
    const text = textField(form, "emails") ?? "";
    if (new TextEncoder().encode(text).byteLength > MAX_IMPORT_BYTES)
      throw new AppError("payload_too_large", "The addresses are more than 1 MiB of text");
    const parsed = parseAddressLines(text, Date.now());
    const emails = parsed.rows.map((r) => r.email);
    // The call POST /v3/asm/groups/{id}/suppressions makes; an address already there keeps its time.
    if (emails.length > 0) {
      const ok = await tenantSuppressions(c.get("db"), session.tenantId).addGroupSuppressions(
        g.id,
        emails,
        Date.now(),
      );
      if (!ok) throw new AppError("not_found", "No such unsubscribe group");
    }
    return c.html(
      <Page title={`Add addresses to ${g.name}`} session={session} current="/app/suppressions">
        <p role="status" id="add-result">
          {emails.length} address{emails.length === 1 ? "" : "es"} unsubscribed from {g.name}
          {parsed.errors.length
            ? `; ${parsed.errors.length} line${parsed.errors.length === 1 ? "" : "s"} not added (below)`
            : ""}
          .
        </p>
        {parsed.errors.length ? (
          <table id="add-errors">
            <caption>Lines not added</caption>
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
          <a href={groupHref(g.id)}>Back to {g.name}</a>
        </p>
      </Page>,
    );
  })
  .post("/suppressions/groups/:id/remove", dashboardPermission(), requireCsrf(), async (c) => {
    const session = c.get("session");
    const g = await ownGroup(c);
    const form = await c.req.parseBody({ all: true });
    refuseUnknownFields(form, ["email"]);
    // The call DELETE /v3/asm/groups/{id}/suppressions/{email} makes.
    const removed = await tenantSuppressions(c.get("db"), session.tenantId).resubscribeToGroup(
      g.id,
      textField(form, "email") ?? "",
    );
    if (!removed) throw new AppError("not_found", `The address is not unsubscribed from ${g.name}`);
    return c.redirect(groupHref(g.id), 303);
  });
