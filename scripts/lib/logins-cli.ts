/**
 * `scaisend logins …`: a tenant's dashboard logins through the admin API (docs/api/admin.md#dashboard-logins,
 * docs/dashboard.md), with the operator token.
 *   scaisend logins list --tenant T
 *   scaisend logins add --tenant T --email E --roles admin[,developer] --password-file FILE|-
 *   scaisend logins password --tenant T --id ID --password-file FILE|-    (signs the login out everywhere)
 *   scaisend logins roles --tenant T --id ID --roles a,b
 *   scaisend logins remove --tenant T --id ID
 * The password comes from a file or stdin (`-`: its first line), never the command line, so it does not
 * land in the shell's history or in `ps`.
 */
import fs from "node:fs";
import { defaultIo, openAdminCommand, type CliIo } from "./admin-command.ts";

export const LOGINS_USAGE = `usage:
  scaisend logins list --tenant TENANT_ID
  scaisend logins add --tenant TENANT_ID --email EMAIL --roles ROLE[,ROLE] --password-file FILE|-
  scaisend logins password --tenant TENANT_ID --id LOGIN_ID --password-file FILE|-
  scaisend logins roles --tenant TENANT_ID --id LOGIN_ID --roles ROLE[,ROLE]
  scaisend logins remove --tenant TENANT_ID --id LOGIN_ID
--password-file is a file whose first line is the password, or - for stdin; never a command-line value.
options: --edge URL (or SCAISEND_EDGE_URL), --admin-token TOKEN (or SCAISEND_ADMIN_TOKEN), --json`;

interface LoginView {
  id: string;
  email: string;
  roles: string[];
  created_at: string;
}

/** The first line: a trailing newline (echo, a heredoc) is not part of the password. */
function readPassword(file: string, io: CliIo): string {
  const text = file === "-" ? io.stdin() : fs.readFileSync(file, "utf8");
  const password = text.split(/\r?\n/)[0] ?? "";
  if (password === "") throw new Error(`--password-file (${file === "-" ? "stdin" : file}) is empty`);
  return password;
}

const rolesOf = (v: string) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** Runs one `logins` command (argv after the word `logins`); returns the exit code. */
export async function runLoginsCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const cmd = openAdminCommand(
    argv,
    io,
    { noun: "logins", usage: LOGINS_USAGE },
    {
      tenant: { type: "string" },
      email: { type: "string" },
      roles: { type: "string" },
      id: { type: "string" },
      "password-file": { type: "string" },
    },
  );
  if (cmd.exit !== null) return cmd.exit;
  const { values, sub, need } = cmd;
  const request = cmd.data;
  const base = () => `/api/admin/tenants/${encodeURIComponent(need("tenant"))}/logins`;
  const at = () => `${base()}/${encodeURIComponent(need("id"))}`;
  const show = (l: LoginView) =>
    io.out(values.json ? JSON.stringify(l, null, 2) : `${l.id} ${l.email} roles=${l.roles.join(",")}`);

  return cmd.run(async () => {
    switch (sub) {
      case "list": {
        const list = await request<LoginView[]>("GET", base(), undefined, "list logins");
        if (values.json) io.out(JSON.stringify(list, null, 2));
        else for (const l of list) show(l);
        return 0;
      }
      case "add":
        show(
          await request<LoginView>(
            "POST",
            base(),
            {
              email: need("email"),
              roles: rolesOf(need("roles")),
              password: readPassword(need("password-file"), io),
            },
            "add login",
          ),
        );
        return 0;
      case "password":
        show(
          await request<LoginView>(
            "PATCH",
            at(),
            { password: readPassword(need("password-file"), io) },
            "set password",
          ),
        );
        return 0;
      case "roles":
        show(await request<LoginView>("PATCH", at(), { roles: rolesOf(need("roles")) }, "set roles"));
        return 0;
      case "remove":
        await request<null>("DELETE", at(), undefined, "remove login");
        if (!values.json) io.out(`removed ${values.id}`);
        return 0;
      default:
        return null;
    }
  });
}
