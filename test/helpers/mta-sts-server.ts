/**
 * An HTTPS server on 127.0.0.1 (port 0) that serves MTA-STS policies (RFC 8461 §3.3) for tests:
 * one server for every policy host, chosen by the Host header, with a certificate the test makes
 * (test/helpers/tls-ca.ts). Each host's answer is scripted: status, Content-Type, body, extra
 * headers, or a hang (never answers: for the fetch timeout). Every request is recorded, so a test
 * can tell a cached policy (no request) from a fetched one.
 */
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TlsCredentials } from "./smtp-servers.ts";

export interface PolicyAnswer {
  status?: number;
  /** Default "text/plain". */
  contentType?: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  /** Never answer (the client's timeout has to end it). */
  hang?: boolean;
}

export interface TestPolicyServer {
  port: number;
  /** Requests seen: the Host header (without port) and path. */
  requests: { host: string; path: string }[];
  /** Sets (or, with undefined, removes) what `mta-sts.<domain>` answers. Unknown hosts get 404. */
  set(policyHost: string, answer: PolicyAnswer | undefined): void;
  close(): Promise<void>;
}

export async function startPolicyServer(tls: TlsCredentials): Promise<TestPolicyServer> {
  const answers = new Map<string, PolicyAnswer>();
  const requests: { host: string; path: string }[] = [];
  const server: Server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    requests.push({ host, path: req.url ?? "" });
    const answer = answers.get(host);
    if (!answer) return void res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    if (answer.hang) return; // held open until the client gives up or the server closes
    res.writeHead(answer.status ?? 200, {
      "content-type": answer.contentType ?? "text/plain",
      ...answer.headers,
    });
    res.end(answer.body ?? "");
  });
  server.on("tlsClientError", () => {}); // clients refusing our certificate are part of the tests
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    set(policyHost, answer) {
      if (answer) answers.set(policyHost.toLowerCase(), answer);
      else answers.delete(policyHost.toLowerCase());
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
