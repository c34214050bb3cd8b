/**
 * `scaisend sk-templates …`: SenderKit templates through the admin API
 * (docs/api/admin.md#senderkit-templates), with the operator token.
 *   scaisend sk-templates list --tenant T
 *   scaisend sk-templates show --tenant T --slug S [--version N]       (with N: that version's content)
 *   scaisend sk-templates create --tenant T --slug S --channel email|sms|push|web-push
 *            [--description D] [--content FILE.json] [--variables FILE.json] [--publish]
 *   scaisend sk-templates version --tenant T --slug S --content FILE.json [--variables FILE.json] [--publish]
 *   scaisend sk-templates publish|rollback --tenant T --slug S [--version N]
 *   scaisend sk-templates archive|unarchive --tenant T --slug S
 * `--content` is a JSON file with the channel's fields (`{"subject","html"}` for email, `{"body"}`
 * for sms, …); `-` reads it from stdin. `--json` prints the API's `data`.
 */
import fs from "node:fs";
import { defaultIo, openAdminCommand, type CliIo } from "./admin-command.ts";

export const SK_TEMPLATES_USAGE = `usage:
  scaisend sk-templates list --tenant TENANT_ID
  scaisend sk-templates show --tenant TENANT_ID --slug SLUG [--version N]
  scaisend sk-templates create --tenant TENANT_ID --slug SLUG --channel email|sms|push|web-push
                               [--description TEXT] [--content FILE.json|-] [--variables FILE.json] [--publish]
  scaisend sk-templates version --tenant TENANT_ID --slug SLUG --content FILE.json|- [--variables FILE.json] [--publish]
  scaisend sk-templates publish|rollback --tenant TENANT_ID --slug SLUG [--version N]
  scaisend sk-templates archive|unarchive --tenant TENANT_ID --slug SLUG
options: --edge URL (or SCAISEND_EDGE_URL), --admin-token TOKEN (or SCAISEND_ADMIN_TOKEN), --json`;

interface TemplateView {
  slug: string;
  channel: string;
  status: string;
  current_version: number | null;
  latest_version: number;
  description: string | null;
  versions?: { version: number; current: boolean; created_at: string; first_published_at: string | null }[];
}

function readJsonFile(file: string, what: string, io: CliIo): unknown {
  const text = file === "-" ? io.stdin() : fs.readFileSync(file, "utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} (${file}) is not JSON`);
  }
}

function printTemplate(t: TemplateView, io: CliIo): void {
  io.out(
    `${t.slug} ${t.channel} ${t.status} current=${t.current_version ?? "-"} latest=${t.latest_version}` +
      (t.description ? ` ${t.description}` : ""),
  );
  for (const v of t.versions ?? []) {
    io.out(
      `  v${v.version}${v.current ? " (current)" : ""} created ${v.created_at}` +
        (v.first_published_at ? `, first published ${v.first_published_at}` : ""),
    );
  }
}

/** Runs one `sk-templates` command (argv after the word `sk-templates`); returns the exit code. */
export async function runSkTemplatesCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const cmd = openAdminCommand(
    argv,
    io,
    { noun: "sk-templates", usage: SK_TEMPLATES_USAGE },
    {
      tenant: { type: "string" },
      slug: { type: "string" },
      channel: { type: "string" },
      description: { type: "string" },
      content: { type: "string" },
      variables: { type: "string" },
      version: { type: "string" },
      publish: { type: "boolean" },
    },
  );
  if (cmd.exit !== null) return cmd.exit;
  const { values, sub, need } = cmd;
  const admin = { request: cmd.data };
  const json = values.json === true;
  const version = () => {
    if (values.version === undefined) return undefined;
    if (!/^\d{1,9}$/.test(values.version) || Number(values.version) < 1) {
      throw new Error("--version must be a positive integer");
    }
    return Number(values.version);
  };
  const base = () => `/api/admin/tenants/${encodeURIComponent(need("tenant"))}/senderkit_templates`;
  const at = () => `${base()}/${encodeURIComponent(need("slug"))}`;
  const show = (t: TemplateView) => (json ? io.out(JSON.stringify(t, null, 2)) : printTemplate(t, io));

  return cmd.run(async () => {
    switch (sub) {
      case "list": {
        const list = await admin.request<TemplateView[]>("GET", base(), undefined, "list templates");
        if (json) io.out(JSON.stringify(list, null, 2));
        else for (const t of list) printTemplate(t, io);
        return 0;
      }
      case "show": {
        const n = version();
        if (n === undefined) {
          show(await admin.request<TemplateView>("GET", at(), undefined, "get template"));
        } else {
          const v = await admin.request<unknown>("GET", `${at()}/versions/${n}`, undefined, "get version");
          io.out(JSON.stringify(v, null, 2));
        }
        return 0;
      }
      case "create": {
        const body: Record<string, unknown> = { slug: need("slug"), channel: need("channel") };
        if (values.description !== undefined) body.description = values.description;
        if (values.content !== undefined) body.content = readJsonFile(values.content, "--content", io);
        if (values.variables !== undefined)
          body.variables = readJsonFile(values.variables, "--variables", io);
        if (values.publish) body.publish = true;
        show(await admin.request<TemplateView>("POST", base(), body, "create template"));
        return 0;
      }
      case "version": {
        const body: Record<string, unknown> = { content: readJsonFile(need("content"), "--content", io) };
        if (values.variables !== undefined)
          body.variables = readJsonFile(values.variables, "--variables", io);
        if (values.publish) body.publish = true;
        const v = await admin.request<{ version: number; current: boolean }>(
          "POST",
          `${at()}/versions`,
          body,
          "add version",
        );
        if (json) io.out(JSON.stringify(v, null, 2));
        else io.out(`${values.slug}: version ${v.version}${v.current ? " (published)" : ""}`);
        return 0;
      }
      case "publish":
      case "rollback": {
        const n = version();
        show(
          await admin.request<TemplateView>(
            "POST",
            `${at()}/${sub}`,
            n === undefined ? {} : { version: n },
            sub,
          ),
        );
        return 0;
      }
      case "archive":
      case "unarchive":
        show(await admin.request<TemplateView>("POST", `${at()}/${sub}`, {}, sub));
        return 0;
      default:
        return null;
    }
  });
}
