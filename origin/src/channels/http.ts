/**
 * One HTTP request to a provider at an operator-configured base URL (config.ts), with a timeout and a
 * capped answer. Network errors and timeouts throw (the dispatcher, index.ts, turns them into a
 * deferral); an answer of any status returns.
 */

/** The most of a provider's answer read; their JSON answers are a few hundred bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  latencyMs: number;
}

export async function providerRequest(
  url: string,
  init: { method?: string; headers: Record<string, string>; body?: string },
  timeoutMs: number,
): Promise<HttpAnswer> {
  const started = Date.now();
  const res = await fetch(url, {
    method: init.method ?? "POST",
    headers: init.headers,
    ...(init.body !== undefined ? { body: init.body } : {}),
    redirect: "manual",
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await readCapped(res);
  return { status: res.status, headers: res.headers, text, latencyMs: Date.now() - started };
}

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_ANSWER_BYTES) {
      await reader.cancel();
      break;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** JSON.parse that answers undefined for anything not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Basic auth (RFC 7617). */
export const basicAuth = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`, "utf8").toString("base64")}`;

/**
 * A provider connection that cannot work as configured (a private key that does not parse, say): the
 * job is failed, not deferred; an operator must fix the connection.
 */
export class ConnectionConfigError extends Error {}
