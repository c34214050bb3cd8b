/**
 * `scaisend providers …`: a tenant's SMS, mobile push and web push provider connections through the
 * admin API (docs/api/admin.md#provider-connections), with the operator token.
 *   scaisend providers list --tenant T [--channel sms|push|web-push]
 *   scaisend providers add --tenant T --channel C --provider P --name N [--default] --credentials FILE|-
 *   scaisend providers rotate --tenant T --id ID --credentials FILE|-     (the whole set, validated again)
 *   scaisend providers default --tenant T --id ID
 *   scaisend providers remove --tenant T --id ID
 * Credentials are a JSON file (or `-`: stdin) with the provider's fields, never command-line values,
 * so a token does not land in the shell's history or in `ps`. The answers show hints, never secrets.
 */
import fs from "node:fs";
import { defaultIo, openAdminCommand, type CliIo } from "./admin-command.ts";

export const PROVIDERS_USAGE = `usage:
  scaisend providers list --tenant TENANT_ID [--channel sms|push|web-push]
  scaisend providers add --tenant TENANT_ID --channel sms|push|web-push --provider twilio|vonage|fcm|apns|expo|vapid
                         --name NAME [--default] --credentials FILE.json|-
  scaisend providers rotate --tenant TENANT_ID --id CONNECTION_ID --credentials FILE.json|-
  scaisend providers default --tenant TENANT_ID --id CONNECTION_ID
  scaisend providers remove --tenant TENANT_ID --id CONNECTION_ID
--credentials is a JSON file with the provider's fields (docs/api/admin.md#provider-connections), or - for
stdin; secrets are never taken from the command line.
options: --edge URL (or SCAISEND_EDGE_URL), --admin-token TOKEN (or SCAISEND_ADMIN_TOKEN), --json`;

interface ConnectionView {
  id: string;
  channel: string;
  provider: string;
  name: string;
  is_default: boolean;
  credentials: Record<string, string>;
  credential_hints: Record<string, string>;
}

function readCredentials(file: string, io: CliIo): unknown {
  const text = file === "-" ? io.stdin() : fs.readFileSync(file, "utf8");
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`--credentials (${file === "-" ? "stdin" : file}) is not JSON`);
  }
}

function printConnection(c: ConnectionView, io: CliIo): void {
  const shown = Object.entries({ ...c.credentials, ...c.credential_hints })
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  io.out(
    `${c.id} ${c.channel} ${c.provider} ${c.name}${c.is_default ? " (default)" : ""} ${shown}`.trimEnd(),
  );
}

/** Runs one `providers` command (argv after the word `providers`); returns the exit code. */
export async function runProvidersCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const cmd = openAdminCommand(
    argv,
    io,
    { noun: "providers", usage: PROVIDERS_USAGE },
    {
      tenant: { type: "string" },
      channel: { type: "string" },
      provider: { type: "string" },
      name: { type: "string" },
      id: { type: "string" },
      credentials: { type: "string" },
      default: { type: "boolean" },
    },
  );
  if (cmd.exit !== null) return cmd.exit;
  const { values, sub, need } = cmd;
  const request = cmd.data;
  const base = () => `/api/admin/tenants/${encodeURIComponent(need("tenant"))}/provider-connections`;
  const at = () => `${base()}/${encodeURIComponent(need("id"))}`;
  const show = (c: ConnectionView) =>
    values.json ? io.out(JSON.stringify(c, null, 2)) : printConnection(c, io);

  return cmd.run(async () => {
    switch (sub) {
      case "list": {
        const q = values.channel !== undefined ? `?channel=${encodeURIComponent(values.channel)}` : "";
        const list = await request<ConnectionView[]>("GET", `${base()}${q}`, undefined, "list connections");
        if (values.json) io.out(JSON.stringify(list, null, 2));
        else for (const c of list) printConnection(c, io);
        return 0;
      }
      case "add": {
        const body: Record<string, unknown> = {
          channel: need("channel"),
          provider: need("provider"),
          name: need("name"),
          credentials: readCredentials(need("credentials"), io),
        };
        if (values.default) body.is_default = true;
        show(await request<ConnectionView>("POST", base(), body, "add connection"));
        return 0;
      }
      case "rotate":
        show(
          await request<ConnectionView>(
            "PATCH",
            at(),
            { credentials: readCredentials(need("credentials"), io) },
            "rotate credentials",
          ),
        );
        return 0;
      case "default":
        show(await request<ConnectionView>("PATCH", at(), { is_default: true }, "make default"));
        return 0;
      case "remove":
        await request<null>("DELETE", at(), undefined, "remove connection");
        if (!values.json) io.out(`removed ${values.id}`);
        return 0;
      default:
        return null;
    }
  });
}
