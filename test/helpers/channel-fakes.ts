/**
 * Loopback fakes of the providers the channel adapters talk to (origin/src/channels/): an HTTP/1.1
 * server and an HTTP/2 cleartext server that record every request (method, path, headers, raw body)
 * and answer with whatever the test's handler returns, so a test asserts what the adapter sent in the
 * provider's own wire format and scripts the provider's answer.
 */
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface FakeAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer | object;
}

export interface FakeServer {
  url: string;
  requests: RecordedRequest[];
  /** Replaces the answering function. */
  handle(fn: (req: RecordedRequest) => FakeAnswer | Promise<FakeAnswer>): void;
  close(): Promise<void>;
}

function flatHeaders(h: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h))
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  return out;
}

function encode(answer: FakeAnswer): { headers: Record<string, string>; body: Buffer } {
  const headers = { ...(answer.headers ?? {}) };
  let body: Buffer;
  if (answer.body === undefined) body = Buffer.alloc(0);
  else if (Buffer.isBuffer(answer.body)) body = answer.body;
  else if (typeof answer.body === "string") body = Buffer.from(answer.body);
  else {
    body = Buffer.from(JSON.stringify(answer.body));
    headers["content-type"] ??= "application/json";
  }
  return { headers, body };
}

/** An HTTP/1.1 provider on 127.0.0.1. */
export async function startFakeHttp(
  fn: (req: RecordedRequest) => FakeAnswer | Promise<FakeAnswer> = () => ({ status: 200 }),
): Promise<FakeServer> {
  let handler = fn;
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const recorded = {
        method: req.method ?? "",
        path: req.url ?? "",
        headers: flatHeaders(req.headers),
        body: Buffer.concat(chunks),
      };
      requests.push(recorded);
      void Promise.resolve(handler(recorded)).then((answer) => {
        const { headers, body } = encode(answer);
        res.writeHead(answer.status, headers);
        res.end(body);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    handle: (f) => {
      handler = f;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** An HTTP/2 provider (prior-knowledge cleartext, RFC 9113 §3.3) on 127.0.0.1, for APNs. */
export async function startFakeHttp2(
  fn: (req: RecordedRequest) => FakeAnswer | Promise<FakeAnswer> = () => ({ status: 200 }),
): Promise<FakeServer & { sessions: number }> {
  let handler = fn;
  const requests: RecordedRequest[] = [];
  const server = http2.createServer();
  const open = new Set<http2.ServerHttp2Session>();
  const fake = {
    url: "",
    requests,
    sessions: 0,
    handle: (f: typeof fn) => {
      handler = f;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
  server.on("session", (s) => {
    fake.sessions++;
    open.add(s);
    s.on("close", () => open.delete(s));
  });
  server.on("stream", (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const recorded = {
        method: String(headers[":method"]),
        path: String(headers[":path"]),
        headers: flatHeaders(headers),
        body: Buffer.concat(chunks),
      };
      requests.push(recorded);
      void Promise.resolve(handler(recorded)).then((answer) => {
        // The client may have given up (a timeout test) and cancelled the stream meanwhile.
        if (stream.closed || stream.destroyed) return;
        const { headers: h, body } = encode(answer);
        stream.respond({ ":status": answer.status, ...h });
        stream.end(body);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}
