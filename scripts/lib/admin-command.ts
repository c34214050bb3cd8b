/**
 * What every `scaisend <noun> <verb>` command that talks to the admin API starts with: its options
 * parsed (the shared --edge, --admin-token, --json and --help with the command's own), usage on
 * --help or no verb, and an AdminClient for the edge and operator token (flags, or the
 * SCAISEND_EDGE_URL / SCAISEND_ADMIN_TOKEN environment). Secrets never come from flags; each
 * command reads them from a file or stdin (docs/operations.md).
 */
import fs from "node:fs";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { AdminApiError, AdminClient, describeError } from "./admin-client.ts";

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  stdin(): string;
}

export const defaultIo: CliIo = {
  out: (l) => console.log(l),
  err: (l) => console.error(l),
  stdin: () => fs.readFileSync(0, "utf8"),
};

const COMMON = {
  edge: { type: "string" },
  "admin-token": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean" },
} as const satisfies ParseArgsOptionsConfig;

/** The command's noun (`providers`, …) as its messages name it, and its usage text. */
export interface CommandSpec {
  noun: string;
  usage: string;
}

/**
 * A parsed command ready to run, or the exit code when there is nothing to run (usage, a bad flag).
 * `need` reads a required string option; `run` runs the verb's body and turns what goes wrong into
 * the exit code: an admin API refusal 1 (with the API's message), a missing or bad option 2, a body
 * answering null (no such verb) 2 with the usage.
 */
export function openAdminCommand<O extends ParseArgsOptionsConfig>(
  argv: string[],
  io: CliIo,
  { noun, usage }: CommandSpec,
  options: O,
) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { ...COMMON, ...options } });
  } catch (err) {
    io.err(`scaisend: ${(err as Error).message}\n${usage}`);
    return { exit: 2 } as const;
  }
  const { values, positionals } = parsed;
  // The shared options, typed here where O is still open (callers see every option typed).
  const common = values as { edge?: string; "admin-token"?: string; help?: boolean };
  const sub = positionals.join(" ");
  if (common.help || sub === "") {
    io.out(usage);
    return { exit: 0 } as const;
  }
  const edge = common.edge ?? process.env.SCAISEND_EDGE_URL;
  const token = common["admin-token"] ?? process.env.SCAISEND_ADMIN_TOKEN;
  if (!edge || !token) {
    io.err("scaisend: --edge and --admin-token (or SCAISEND_EDGE_URL / SCAISEND_ADMIN_TOKEN) are required");
    return { exit: 2 } as const;
  }
  const client = new AdminClient(edge, token);
  /** Every admin answer is {"data": …} (a 204 is null). */
  const data = async <T>(method: string, path: string, body: unknown, what: string): Promise<T> =>
    ((await client.request<{ data: T } | null>(method, path, body, what)) ?? { data: null as T }).data;
  const need = (name: Extract<keyof O, string>): string => {
    const v = (values as Record<string, unknown>)[name];
    if (typeof v !== "string" || v === "") throw new Error(`--${name} is required for "${noun} ${sub}"`);
    return v;
  };
  const run = async (body: () => Promise<number | null>): Promise<number> => {
    try {
      const code = await body();
      if (code !== null) return code;
      io.err(`scaisend: unknown command "${noun} ${sub}"\n${usage}`);
      return 2;
    } catch (err) {
      if (err instanceof AdminApiError) {
        io.err(`scaisend: ${describeError(err)}`);
        return 1;
      }
      io.err(`scaisend: ${(err as Error).message}`);
      return 2;
    }
  };
  return { exit: null, values, sub, client, data, need, run } as const;
}
