/**
 * A real DNS server on loopback for tests: UDP and TCP on the same port (RFC 7766: resolvers fall
 * back to TCP when a UDP answer is truncated, which 2048-bit DKIM keys can cause), answering A,
 * AAAA, MX and TXT from an in-memory zone, plus a DNS-over-HTTPS JSON endpoint in the
 * Google/Cloudflare `application/dns-json` format for the edge's domain verification.
 *
 *   unknown name          → NXDOMAIN (Status 3)
 *   known name, no type   → NOERROR with no answers (NODATA)
 *   name with servfail    → SERVFAIL (Status 2), for "DNS is down, retry later" tests
 *   name with silent      → no answer at all over UDP/TCP (the query is counted), for timeouts
 */
import { createSocket, type RemoteInfo } from "node:dgram";
import { Resolver } from "node:dns/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer as createTcpServer, type Server as TcpServer } from "node:net";
import type { AddressInfo } from "node:net";
import dnsPacket from "dns-packet";
import type { Answer, Packet, Question } from "dns-packet";

export interface DnsNameRecords {
  A?: string[];
  AAAA?: string[];
  /** exchange "." is a null MX (RFC 7505). */
  MX?: { preference: number; exchange: string }[];
  /** A string longer than 255 bytes is split into 255-byte character-strings; an array is sent as given. */
  TXT?: (string | string[])[];
  /** Answer every query for this name with SERVFAIL. */
  servfail?: boolean;
  /** Never answer queries for this name (a resolver that hangs). */
  silent?: boolean;
  ttl?: number;
}
export type DnsZone = Record<string, DnsNameRecords>;

export interface TestDnsServer {
  udpPort: number;
  /** "127.0.0.1:<port>", the form Resolver#setServers and the origin config take. */
  server: string;
  dohUrl: string;
  setRecords(records: DnsZone): void;
  /** Queries seen so far (name/type), to assert on caching. */
  queries: { name: string; type: string }[];
  close(): Promise<void>;
}

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 } as const;
const TYPE_NUMBERS: Record<string, number> = { A: 1, MX: 15, TXT: 16, AAAA: 28 };
const DEFAULT_TTL = 300;

const normalize = (name: string) => name.replace(/\.$/, "").toLowerCase();

/** RFC 1035 §3.3.14: TXT RDATA is one or more <character-string>s of at most 255 bytes each. */
export function splitTxt(value: string): Buffer[] {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length === 0) return [bytes];
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 255) parts.push(bytes.subarray(i, i + 255));
  return parts;
}

interface Lookup {
  rcode: number;
  answers: Answer[];
}

function lookup(zone: DnsZone, rawName: string, type: string): Lookup {
  const name = normalize(rawName);
  const records = zone[name];
  if (!records) return { rcode: RCODE.NXDOMAIN, answers: [] };
  if (records.servfail) return { rcode: RCODE.SERVFAIL, answers: [] };
  const ttl = records.ttl ?? DEFAULT_TTL;
  const base = { name: rawName.replace(/\.$/, ""), ttl, class: "IN" as const };
  switch (type) {
    case "A":
      return {
        rcode: RCODE.NOERROR,
        answers: (records.A ?? []).map((data) => ({ ...base, type: "A" as const, data })),
      };
    case "AAAA":
      return {
        rcode: RCODE.NOERROR,
        answers: (records.AAAA ?? []).map((data) => ({ ...base, type: "AAAA" as const, data })),
      };
    case "MX":
      return {
        rcode: RCODE.NOERROR,
        answers: (records.MX ?? []).map((mx) => ({
          ...base,
          type: "MX" as const,
          data: { preference: mx.preference, exchange: mx.exchange },
        })),
      };
    case "TXT":
      return {
        rcode: RCODE.NOERROR,
        answers: (records.TXT ?? []).map((txt) => ({
          ...base,
          type: "TXT" as const,
          data: Array.isArray(txt) ? txt.map((s) => Buffer.from(s, "utf8")) : splitTxt(txt),
        })),
      };
    default:
      return { rcode: RCODE.NOERROR, answers: [] };
  }
}

function respond(zone: DnsZone, query: Packet, maxBytes: number): Buffer {
  const question = query.questions?.[0];
  const { rcode, answers } = question
    ? lookup(zone, question.name, question.type)
    : { rcode: 1, answers: [] };
  const flags = dnsPacket.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | rcode;
  const response: Packet = {
    type: "response",
    id: query.id ?? 0,
    flags,
    questions: query.questions ?? [],
    answers,
  };
  const encoded = dnsPacket.encode(response);
  if (encoded.length <= maxBytes) return encoded;
  // Too big for this transport: send the question only with TC set so the client retries over TCP.
  return dnsPacket.encode({ ...response, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers: [] });
}

/** Largest UDP answer the client accepts: 512 bytes (RFC 1035) unless its EDNS0 OPT record says more. */
function udpLimit(query: Packet): number {
  const opt = query.additionals?.find((a) => a.type === "OPT") as { udpPayloadSize?: number } | undefined;
  return Math.max(512, opt?.udpPayloadSize ?? 512);
}

function txtForJson(answer: Answer): string {
  const data = (answer as { data: Buffer[] }).data;
  // Cloudflare's JSON API quotes each character-string and separates them with a space.
  return data.map((part) => JSON.stringify(part.toString("utf8"))).join(" ");
}

function jsonData(answer: Answer): string {
  switch (answer.type) {
    case "MX":
      return `${answer.data.preference} ${answer.data.exchange === "." || answer.data.exchange === "" ? "" : answer.data.exchange}.`;
    case "TXT":
      return txtForJson(answer);
    default:
      return String((answer as { data: unknown }).data);
  }
}

async function listenTcpOnSamePort(
  udpPort: number,
  handler: (socket: import("node:net").Socket) => void,
): Promise<TcpServer | null> {
  const server = createTcpServer(handler);
  return new Promise((resolve) => {
    server.once("error", () => resolve(null));
    server.listen(udpPort, "127.0.0.1", () => resolve(server));
  });
}

export async function startDnsServer(options: { records?: DnsZone } = {}): Promise<TestDnsServer> {
  let zone: DnsZone = normalizeZone(options.records ?? {});
  const queries: { name: string; type: string }[] = [];

  const handle = (message: Buffer, maxBytes: (q: Packet) => number): Buffer | null => {
    let query: Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return null; // not DNS: drop it, as a real server would
    }
    const q: Question | undefined = query.questions?.[0];
    if (q) queries.push({ name: normalize(q.name), type: q.type });
    if (q && zone[normalize(q.name)]?.silent) return null;
    return respond(zone, query, maxBytes(query));
  };

  const tcpHandler = (socket: import("node:net").Socket) => {
    let buffered = Buffer.alloc(0);
    socket.on("error", () => {});
    socket.on("data", (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      // RFC 1035 §4.2.2: each TCP message is prefixed with its two-byte length.
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const reply = handle(buffered.subarray(2, 2 + length), () => 65_535);
        buffered = buffered.subarray(2 + length);
        if (reply) {
          const prefix = Buffer.alloc(2);
          prefix.writeUInt16BE(reply.length);
          socket.write(Buffer.concat([prefix, reply]));
        }
      }
    });
  };

  // UDP on an ephemeral port, then TCP on the same number; if TCP finds it taken, start over.
  let udp = createSocket("udp4");
  let tcp: TcpServer | null = null;
  for (let tries = 0; tries < 20 && !tcp; tries++) {
    if (tries > 0) {
      udp.close();
      udp = createSocket("udp4");
    }
    await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
    tcp = await listenTcpOnSamePort((udp.address() as AddressInfo).port, tcpHandler);
  }
  if (!tcp) throw new Error("could not bind the test DNS server's UDP and TCP on one port");
  const tcpServer = tcp;
  udp.on("message", (message: Buffer, remote: RemoteInfo) => {
    const reply = handle(message, udpLimit);
    if (reply) udp.send(reply, remote.port, remote.address);
  });
  const udpPort = (udp.address() as AddressInfo).port;

  const http = createHttpServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const name = url.searchParams.get("name");
    const typeParam = (url.searchParams.get("type") ?? "A").toUpperCase();
    const type = /^\d+$/.test(typeParam)
      ? (Object.entries(TYPE_NUMBERS).find(([, n]) => String(n) === typeParam)?.[0] ?? typeParam)
      : typeParam;
    if (url.pathname !== "/dns-query" || !name) {
      res
        .writeHead(400, { "content-type": "application/json" })
        .end(JSON.stringify({ error: "name is required" }));
      return;
    }
    queries.push({ name: normalize(name), type });
    const result = lookup(zone, name, type);
    const body: Record<string, unknown> = {
      Status: result.rcode,
      TC: false,
      RD: true,
      RA: true,
      AD: false,
      CD: false,
      Question: [{ name: name.replace(/\.$/, ""), type: TYPE_NUMBERS[type] ?? 0 }],
    };
    if (result.answers.length) {
      body.Answer = result.answers.map((answer) => ({
        name: answer.name,
        type: TYPE_NUMBERS[answer.type] ?? 0,
        TTL: (answer as { ttl?: number }).ttl ?? DEFAULT_TTL,
        data: jsonData(answer),
      }));
    }
    res.writeHead(200, { "content-type": "application/dns-json" }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const httpPort = (http.address() as AddressInfo).port;

  return {
    udpPort,
    server: `127.0.0.1:${udpPort}`,
    dohUrl: `http://127.0.0.1:${httpPort}/dns-query`,
    queries,
    setRecords(records) {
      zone = normalizeZone(records);
    },
    async close() {
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcpServer.close(() => resolve())),
        new Promise<void>((resolve) => {
          http.closeAllConnections();
          http.close(() => resolve());
        }),
      ]);
    },
  };
}

function normalizeZone(records: DnsZone): DnsZone {
  return Object.fromEntries(Object.entries(records).map(([name, value]) => [normalize(name), value]));
}

/**
 * A mailauth-style resolver (`(name, rrtype) => records`) that asks the test server over real
 * UDP/TCP, so DKIM verification in tests goes through DNS like a receiving MTA does.
 */
export function mailauthResolver(
  server: string,
): (name: string, rrtype: string) => Promise<string[][] | string[]> {
  const resolver = new Resolver({ timeout: 2_000, tries: 1 });
  resolver.setServers([server]);
  return async (name, rrtype) => {
    switch (rrtype.toUpperCase()) {
      case "TXT":
        return resolver.resolveTxt(name);
      case "A":
        return resolver.resolve4(name);
      case "AAAA":
        return resolver.resolve6(name);
      default:
        throw Object.assign(new Error(`unsupported rrtype ${rrtype}`), { code: "ENOTIMP" });
    }
  };
}
