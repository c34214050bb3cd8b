/**
 * The SMTP submission listeners' figures on the origin's own /metrics (docs/operations.md#health-readiness-and-metrics):
 * a real origin node (startOriginNode, both listeners on, TLS from a throw-away CA) against a real
 * loopback HTTP server standing in for the edge's /v3/scopes and /v3/mail/send; nodemailer submits,
 * the test scrapes /metrics over HTTP before and after and checks each counter moved by exactly what
 * was sent, refused and connected — and that no API key or address appears in the exposition.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import nodemailer from "nodemailer";
import type Mail from "nodemailer/lib/mailer";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { startOriginNode, type OriginNode } from "../../origin/src/node.ts";
import type { Logger } from "../../origin/src/ops/log.ts";
import { createTestCa, type TestCa } from "../helpers/tls-ca.ts";

const GOOD_KEY = "sg_live_0123456789abcdef0123456789abcdef";
const READ_ONLY_KEY = "sg_live_fedcba9876543210fedcba9876543210";
const BAD_KEY = "sg_live_00000000000000000000000000000000";
/** mail/send waits this long before its 202 for a message whose subject says "slow". */
const SLOW_MS = 400;
const MAX_BYTES = 64 * 1024;

let ca: TestCa;
let dir: string;
let edge: http.Server;
let node: OriginNode;
let metricsUrl: string;
/** The node's warnings and errors, but for its hub link's (refused by the stand-in edge, retried). */
const problems: string[] = [];
const quiet = () => undefined;
const logger: Logger = {
  debug: quiet,
  info: quiet,
  warn: (msg) => void (/link/.test(msg) || problems.push(msg)),
  error: (msg) => void (/link/.test(msg) || problems.push(msg)),
};
/** mail/send's answer by the message's subject: `status:<code>` or `slow`, else 202. */
const mailSendAnswer = (subject: string): { status: number; delayMs: number } => {
  const m = /^status:(\d{3})/.exec(subject);
  if (m) return { status: Number(m[1]), delayMs: 0 };
  return { status: 202, delayMs: subject.startsWith("slow") ? SLOW_MS : 0 };
};

beforeAll(async () => {
  ca = createTestCa();
  const leaf = ca.issue(["localhost"]);
  dir = mkdtempSync(join(tmpdir(), "scaisend-submission-metrics-"));
  writeFileSync(join(dir, "key.pem"), leaf.key);
  writeFileSync(join(dir, "cert.pem"), leaf.cert);

  edge = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const key = req.headers.authorization?.replace(/^Bearer /, "");
      const scopes = key === GOOD_KEY ? ["mail.send"] : key === READ_ONLY_KEY ? ["messages.read"] : null;
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (!scopes) return reply(401, { detail: "Invalid API key" });
      if (req.url === "/v3/scopes") return reply(200, { scopes });
      if (req.url !== "/v3/mail/send") return reply(404, { detail: "Not Found" });
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { subject: string };
      const { status, delayMs } = mailSendAnswer(body.subject);
      setTimeout(
        () =>
          status === 202
            ? reply(202, { message_id: `msg_${randomBytes(6).toString("hex")}` })
            : reply(status, { errors: [{ field: "from.email", message: `refused with ${status}` }] }),
        delayMs,
      );
    });
  });
  await new Promise<void>((r) => edge.listen(0, "127.0.0.1", r));
  const edgeUrl = `http://127.0.0.1:${(edge.address() as AddressInfo).port}`;

  node = await startOriginNode(
    loadOriginConfig({
      // The node's hub link dials this too and is refused (no WebSocket there): it keeps retrying,
      // which the submission listeners do not depend on.
      EDGE_URL: edgeUrl,
      ORIGIN_TOKEN: randomBytes(24).toString("hex"),
      VERP_SECRET: randomBytes(24).toString("hex"),
      NODE_ID: "submission-metrics-node",
      HTTP_PORT: "0",
      COMPOSE_THREADS: "0",
      JOURNAL_DIR: join(dir, "journal"),
      SUBMISSION_HOST: "127.0.0.1",
      SUBMISSION_PORT: "0",
      SUBMISSION_TLS_PORT: "0",
      SUBMISSION_TLS_KEY_FILE: join(dir, "key.pem"),
      SUBMISSION_TLS_CERT_FILE: join(dir, "cert.pem"),
      SUBMISSION_MAX_MESSAGE_BYTES: String(MAX_BYTES),
      SUBMISSION_MAX_RECIPIENTS: "2",
      SUBMISSION_AUTH_TARPIT_MS: "0",
      SUBMISSION_AUTH_FAILURES: "50",
    }),
    logger,
  );
  metricsUrl = `http://127.0.0.1:${node.httpPort}/metrics`;
});

afterAll(async () => {
  await node?.drain();
  await new Promise<void>((r) => edge.close(() => r()));
  ca.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** The exposition's samples, `name{labels}` → value, over real HTTP. */
async function scrape(): Promise<{ text: string; samples: Map<string, number> }> {
  const res = await fetch(metricsUrl);
  expect(res.status).toBe(200);
  const text = await res.text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { text, samples };
}

const delta = (before: Map<string, number>, after: Map<string, number>, sample: string) =>
  (after.get(sample) ?? 0) - (before.get(sample) ?? 0);

type How = { pass?: string; implicit?: boolean; plain?: boolean };
function transport(o: How = {}) {
  const port = o.implicit ? node.submission!.tlsPort! : node.submission!.port!;
  return nodemailer.createTransport({
    host: "127.0.0.1",
    port,
    secure: Boolean(o.implicit),
    ...(o.plain ? { ignoreTLS: true } : { requireTLS: !o.implicit }),
    tls: { ca: ca.cert, servername: "localhost" },
    auth: { user: "apikey", pass: o.pass ?? GOOD_KEY },
  });
}

/** One connection, one message; resolves with the reply code (250 or the refusal's). */
async function submit(m: Mail.Options, o: How = {}): Promise<number> {
  const t = transport(o);
  try {
    const info = await t.sendMail(m);
    return Number(info.response.slice(0, 3));
  } catch (err) {
    return (err as { responseCode?: number }).responseCode ?? -1;
  } finally {
    t.close();
  }
}

const message = (subject: string, extra: Partial<Mail.Options> = {}): Mail.Options => ({
  from: "App <app@sender.test>",
  to: "alice@inbox.test",
  subject,
  text: "plain",
  ...extra,
});

/** The raw message of exactly `bytes` bytes (CRLF lines, no leading dots), for the size histogram. */
function rawOfSize(bytes: number): string {
  const head = "From: app@sender.test\r\nTo: alice@inbox.test\r\nSubject: sized\r\n\r\n";
  const body = "y".repeat(bytes - head.length - 2) + "\r\n";
  return head + body;
}

async function openConnections(listener: string): Promise<number> {
  const { samples } = await scrape();
  return samples.get(`scaisend_origin_submission_connections{listener="${listener}"}`) ?? NaN;
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("submission metrics on /metrics", () => {
  it("count connections, AUTH results, accepted messages, refusals by code, sizes and the time to the 202", async () => {
    const { samples: before } = await scrape();

    // Accepted: two on 587, one on 465; one of them waits SLOW_MS for its 202.
    const sized = rawOfSize(5_000);
    const codes = [
      await submit(message("hello")),
      await submit(message("slow one")),
      await submit(message("hello 465"), { implicit: true }),
      // Refused by the edge after DATA: 403 → 550, 413 → 552, 429 → 451, 500 → 451.
      await submit(message("status:403")),
      await submit(message("status:413")),
      await submit(message("status:429")),
      await submit(message("status:500"), { implicit: true }),
      // Refused at AUTH: an unknown key and a key without mail.send (535 each), on both listeners.
      await submit(message("never"), { pass: BAD_KEY }),
      await submit(message("never"), { pass: READ_ONLY_KEY, implicit: true }),
      // AUTH before STARTTLS: smtp-server's own 538, no AUTH attempt reaches the handler.
      await submit(message("never"), { plain: true }),
      // Over SUBMISSION_MAX_MESSAGE_BYTES: 552 after DATA, the edge never asked.
      await submit(message("too big", { text: "z".repeat(MAX_BYTES + 1_000) })),
    ];
    // A raw message of a known size, accepted.
    const t = transport();
    const sizedInfo = await t.sendMail({
      envelope: { from: "app@sender.test", to: ["alice@inbox.test"] },
      raw: sized,
    });
    t.close();
    // Three recipients with SUBMISSION_MAX_RECIPIENTS=2: one 452, the message accepted for two.
    const three = await submit(message("three", { to: ["a@inbox.test", "b@inbox.test", "c@inbox.test"] }));

    expect(codes).toEqual([250, 250, 250, 550, 552, 451, 451, 535, 535, 538, 552]);
    expect(sizedInfo.response).toMatch(/^250 /);
    expect(three).toBe(250);

    // Every connection has closed (the gauges say so once smtp-server saw each socket close).
    await until(
      async () => (await openConnections("starttls")) === 0 && (await openConnections("implicit_tls")) === 0,
      "the connections to close",
    );
    const { samples: after, text } = await scrape();
    const d = (sample: string) => delta(before, after, sample);

    // 13 connections: 10 on 587 (the sized and the three-recipient one included), 3 on 465.
    expect(d('scaisend_origin_submission_connections_total{listener="starttls"}')).toBe(10);
    expect(d('scaisend_origin_submission_connections_total{listener="implicit_tls"}')).toBe(3);

    expect(d('scaisend_origin_submission_auth_total{listener="starttls",result="success"}')).toBe(8);
    expect(d('scaisend_origin_submission_auth_total{listener="implicit_tls",result="success"}')).toBe(2);
    expect(d('scaisend_origin_submission_auth_total{listener="starttls",result="failure"}')).toBe(1);
    expect(d('scaisend_origin_submission_auth_total{listener="implicit_tls",result="failure"}')).toBe(1);
    expect(d('scaisend_origin_submission_auth_total{listener="starttls",result="error"}')).toBe(0);
    expect(d('scaisend_origin_submission_auth_total{listener="starttls",result="limited"}')).toBe(0);

    expect(d("scaisend_origin_submission_messages_total")).toBe(5);

    const refusals = (code: number) => d(`scaisend_origin_submission_refusals_total{code="${code}"}`);
    expect(refusals(550)).toBe(1);
    expect(refusals(552)).toBe(2);
    expect(refusals(451)).toBe(2);
    expect(refusals(535)).toBe(2);
    expect(refusals(538)).toBe(1);
    expect(refusals(452)).toBe(1);
    // Nothing else was refused: the sum of every code's counter moved by exactly these nine.
    const allRefusals = (m: Map<string, number>) =>
      [...m]
        .filter(([k]) => k.startsWith("scaisend_origin_submission_refusals_total{"))
        .reduce((a, [, v]) => a + v, 0);
    expect(allRefusals(after) - allRefusals(before)).toBe(9);

    // Sizes: every message that reached the end of DATA (5 accepted, 4 refused by the edge, the
    // oversized one); the raw message counts exactly its bytes, the oversized one more than the limit.
    expect(d("scaisend_origin_submission_message_size_bytes_count")).toBe(10);
    expect(d('scaisend_origin_submission_message_size_bytes_bucket{le="+Inf"}')).toBe(10);
    expect(d('scaisend_origin_submission_message_size_bytes_bucket{le="65536"}')).toBe(9);
    expect(d('scaisend_origin_submission_message_size_bytes_bucket{le="4096"}')).toBe(8);
    expect(d("scaisend_origin_submission_message_size_bytes_sum")).toBeGreaterThan(5_000 + MAX_BYTES);

    // The time from the end of DATA to the 202: one observation per accepted message, and the slow
    // one took at least SLOW_MS, so it is not in the buckets below that.
    expect(d("scaisend_origin_submission_accept_seconds_count")).toBe(5);
    expect(d('scaisend_origin_submission_accept_seconds_bucket{le="0.25"}')).toBeLessThanOrEqual(4);
    expect(d("scaisend_origin_submission_accept_seconds_sum")).toBeGreaterThanOrEqual(SLOW_MS / 1000);

    // Prometheus conventions: counters end in _total, and no key or address is ever a label.
    for (const secret of [GOOD_KEY, READ_ONLY_KEY, BAD_KEY, "127.0.0.1", "inbox.test", "sender.test"]) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain("# TYPE scaisend_origin_submission_refusals_total counter");
    expect(text).toContain("# TYPE scaisend_origin_submission_connections gauge");
    expect(text).toContain("# TYPE scaisend_origin_submission_accept_seconds histogram");
    expect(problems).toEqual([]);
  });

  it("counts a message's bytes as smtp-server received them (the final CRLF included)", async () => {
    const { samples: before } = await scrape();
    const t = transport();
    const info = await t.sendMail({
      envelope: { from: "app@sender.test", to: ["alice@inbox.test"] },
      raw: rawOfSize(5_000),
    });
    t.close();
    expect(info.response).toMatch(/^250 /);
    const { samples: after } = await scrape();
    const d = (sample: string) => delta(before, after, sample);
    expect(d("scaisend_origin_submission_message_size_bytes_sum")).toBe(5_000);
    expect(d("scaisend_origin_submission_message_size_bytes_count")).toBe(1);
    expect(d('scaisend_origin_submission_message_size_bytes_bucket{le="4096"}')).toBe(0);
    expect(d('scaisend_origin_submission_message_size_bytes_bucket{le="16384"}')).toBe(1);
    expect(d("scaisend_origin_submission_messages_total")).toBe(1);
  });

  it("shows a connection open while it lasts, per listener", async () => {
    const c = new SMTPConnection({
      host: "127.0.0.1",
      port: node.submission!.tlsPort!,
      secure: true,
      tls: { ca: ca.cert, servername: "localhost" },
    });
    await new Promise<void>((resolve, reject) => {
      c.once("error", reject);
      c.connect(() => resolve());
    });
    expect(await openConnections("implicit_tls")).toBe(1);
    expect(await openConnections("starttls")).toBe(0);
    await new Promise<void>((resolve) => {
      c.once("end", () => resolve());
      c.quit();
    });
    await until(async () => (await openConnections("implicit_tls")) === 0, "the connection to close");
  });
});
