/**
 * Serves a LocalOidcIssuer (test/helpers/oidc-issuer.ts) over HTTP on 127.0.0.1 (Node only), for
 * tests that reach ScaiKey over a real socket: the e2e stack, or the OIDC client under Node.
 * The issuer's URL becomes `http://127.0.0.1:<port>`; `close()` stops the server.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { LocalOidcIssuer } from "./oidc-issuer.ts";

const MAX_BODY = 64 * 1024;

async function bodyOf(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Error("request body too large");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function serveOidcIssuer(
  client: { id: string; secret: string },
  audience: string,
  /** What answers the requests (default: the issuer); e.g. a fake ScaiKey in front of it. */
  handlerOf: (issuer: LocalOidcIssuer) => (req: Request) => Promise<Response> = (i) => (req) => i.handle(req),
): Promise<{ issuer: LocalOidcIssuer; url: string; close: () => Promise<void> }> {
  // The issuer names its own URL, which is known once the port is: created with a placeholder.
  const issuer = await LocalOidcIssuer.create("http://127.0.0.1", client, audience);
  const handle = handlerOf(issuer);
  const server = createServer((req, res) => {
    void (async () => {
      try {
        const body = req.method === "GET" || req.method === "HEAD" ? undefined : await bodyOf(req);
        const headers = new Headers();
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
        const answer = await handle(
          new Request(`${issuer.issuer}${req.url ?? "/"}`, {
            method: req.method,
            headers,
            ...(body ? { body: new Uint8Array(body) } : {}),
          }),
        );
        const out: Record<string, string> = {};
        answer.headers.forEach((v, k) => (out[k] = v));
        res.writeHead(answer.status, out);
        res.end(Buffer.from(await answer.arrayBuffer()));
      } catch (err) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(String(err));
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  issuer.issuer = `http://127.0.0.1:${port}`;
  return {
    issuer,
    url: issuer.issuer,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
