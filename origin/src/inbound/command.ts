/**
 * `scaisend bounce classify < message.eml`: the classifier as a postmaster's command
 * (docs/bounces.md). One JSON object per failed recipient (or complaint) on standard output; why
 * nothing was printed on standard error. Exit 0 once the message was read, 1 when it is not one.
 */
import { classifyInbound } from "./classify.ts";
import { InboundParseError, parseInbound } from "./parse.ts";

export interface CommandIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

export async function bounceClassify(
  input: Buffer,
  env: { VERP_SECRET?: string; VERP_PREFIX?: string },
  io: CommandIo,
): Promise<number> {
  let parsed;
  try {
    parsed = await parseInbound(input);
  } catch (err) {
    if (err instanceof InboundParseError) {
      io.err(`scaisend: cannot classify: ${err.message}`);
      return 1;
    }
    throw err;
  }
  const secret = env.VERP_SECRET?.trim();
  const c = classifyInbound(parsed, {
    verp: secret ? { secret, ...(env.VERP_PREFIX ? { prefix: env.VERP_PREFIX } : {}) } : null,
  });
  for (const r of c.results) io.out(JSON.stringify(r));
  if (c.results.length === 0) io.err(`scaisend: nothing to report (${c.kind}): ${"why" in c ? c.why : ""}`);
  else if (!secret && c.results.some((r) => r.verp === "invalid")) {
    io.err("scaisend: VERP_SECRET is not set, so VERP tokens were not verified (not trusted)");
  }
  return 0;
}

/** All of standard input. */
export async function readStdin(stream: NodeJS.ReadableStream = process.stdin): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}
