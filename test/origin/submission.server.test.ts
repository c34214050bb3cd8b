/**
 * The SMTP submission server (origin/src/submission/server.ts) with nodemailer as the submitting
 * client, over STARTTLS and implicit TLS with a certificate from a throw-away CA, against a real
 * local HTTP server standing in for the edge's /v3/scopes and /v3/mail/send. Checks the AUTH rules
 * (apikey + key, TLS first), the mapping of every edge answer to its SMTP reply, and the limits.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nodemailer from "nodemailer";
import type Mail from "nodemailer/lib/mailer";
import SMTPConnection from "nodemailer/lib/smtp-connection";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createMetrics } from "../../origin/src/ops/metrics.ts";
import { createEdgeClient, sendReply } from "../../origin/src/submission/edge-client.ts";
import {
  startSubmissionServer,
  type SubmissionServer,
  type SubmissionServerOptions,
} from "../../origin/src/submission/server.ts";
import { createTestCa, type TestCa } from "../helpers/tls-ca.ts";

const GOOD_KEY = "sg_live_0123456789abcdef0123456789abcdef";
const READ_ONLY_KEY = "sg_live_fedcba9876543210fedcba9876543210";

interface EdgeCall {
  path: string;
  authorization: string | undefined;
  idempotencyKey: string | undefined;
  body: any;
}

/** The stand-in edge: keys and their scopes; mail/send answers with `answer` (default 202). */
let edge: http.Server;
let edgeUrl: string;
let calls: EdgeCall[] = [];
let answer: (call: EdgeCall, res: http.ServerResponse) => void;
const accept = (_call: EdgeCall, res: http.ServerResponse) => {
  res.writeHead(202, { "content-type": "application/json", "x-message-id": "msg_1" });
  res.end(JSON.stringify({ message_id: "msg_1" }));
};

let ca: TestCa;
let dir: string;
let tls: { keyFile: string; certFile: string };
const servers: SubmissionServer[] = [];

beforeAll(async () => {
  ca = createTestCa();
  const leaf = ca.issue(["localhost"]);
  dir = mkdtempSync(join(tmpdir(), "scaisend-submission-"));
  tls = { keyFile: join(dir, "key.pem"), certFile: join(dir, "cert.pem") };
  writeFileSync(tls.keyFile, leaf.key);
  writeFileSync(tls.certFile, leaf.cert);

  edge = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const call: EdgeCall = {
        path: req.url ?? "",
        authorization: req.headers.authorization,
        idempotencyKey: req.headers["idempotency-key"] as string | undefined,
        body: text ? JSON.parse(text) : null,
      };
      calls.push(call);
      const key = call.authorization?.replace(/^Bearer /, "");
      const scopes = key === GOOD_KEY ? ["mail.send"] : key === READ_ONLY_KEY ? ["messages.read"] : null;
      if (!scopes) {
        res.writeHead(401, { "content-type": "application/json" });
        return res.end(JSON.stringify({ detail: "Invalid API key" }));
      }
      if (call.path === "/v3/scopes") {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end(JSON.stringify({ scopes }));
      }
      answer(call, res);
    });
  });
  await new Promise<void>((r) => edge.listen(0, "127.0.0.1", r));
  edgeUrl = `http://127.0.0.1:${(edge.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  calls = [];
  answer = accept;
});

afterAll(async () => {
  await new Promise<void>((r) => edge.close(() => r()));
  ca.dispose();
  rmSync(dir, { recursive: true, force: true });
});

answer = accept;

async function start(overrides: Partial<SubmissionServerOptions> = {}): Promise<SubmissionServer> {
  const server = await startSubmissionServer({
    host: "127.0.0.1",
    port: 0,
    tlsPort: 0,
    tls,
    hostname: "submit.test",
    edge: createEdgeClient({ edgeUrl, timeoutMs: 5_000, keyCacheMs: 60_000 }),
    maxMessageBytes: 20 * 1024 * 1024,
    maxRecipients: 1_000,
    limits: { maxAuthFailures: 5, cooldownMs: 60_000, tarpitMs: 0, maxConnectionsPerKey: 20 },
    idleTimeoutMs: 30_000,
    log: () => undefined,
    ...overrides,
  });
  servers.push(server);
  return server;
}

type TransportOptions = {
  pass?: string;
  user?: string;
  implicit?: boolean;
  plain?: boolean;
  method?: string;
};

function transport(server: SubmissionServer, o: TransportOptions = {}) {
  return nodemailer.createTransport({
    host: "127.0.0.1",
    port: o.implicit ? server.tlsPort! : server.port!,
    secure: Boolean(o.implicit),
    ...(o.plain ? { ignoreTLS: true } : { requireTLS: !o.implicit }),
    tls: { ca: ca.cert, servername: "localhost" },
    auth: { user: o.user ?? "apikey", pass: o.pass ?? GOOD_KEY },
    ...(o.method ? { authMethod: o.method } : {}),
  });
}

const mail: Mail.Options = {
  from: "App <app@sender.test>",
  to: "alice@inbox.test",
  subject: "Hello over SMTP",
  text: "plain",
  html: "<p>html</p>",
};

async function send(server: SubmissionServer, m: Mail.Options = mail, o: TransportOptions = {}) {
  const t = transport(server, o);
  try {
    return await t.sendMail(m);
  } finally {
    t.close();
  }
}

/** The SMTP error nodemailer reports for a refused submission. */
async function refused(server: SubmissionServer, m: Mail.Options = mail, o: TransportOptions = {}) {
  const err = (await send(server, m, o).then(
    () => null,
    (e: unknown) => e,
  )) as { responseCode?: number; response?: string } | null;
  expect(err).not.toBeNull();
  return { code: err!.responseCode, response: err!.response ?? "" };
}

const mailSends = () => calls.filter((c) => c.path === "/v3/mail/send");

describe("submission over TLS with apikey + an API key", () => {
  it("answers 250 with the message id only after the edge's mail/send accepted it, key as Bearer", async () => {
    const server = await start();
    const info = await send(server, {
      ...mail,
      cc: "carol@inbox.test",
      bcc: "hidden@inbox.test",
      headers: { "X-SMTPAPI": JSON.stringify({ category: ["smtp"], unique_args: { order: "42" } }) },
    });
    expect(info.response).toBe("250 2.0.0 Ok: queued as msg_1");
    expect(info.accepted).toEqual(["alice@inbox.test", "carol@inbox.test", "hidden@inbox.test"]);
    const [call] = mailSends();
    expect(call!.authorization).toBe(`Bearer ${GOOD_KEY}`);
    expect(call!.idempotencyKey).toMatch(/^smtp-[0-9a-f]{64}$/);
    expect(call!.body).toMatchObject({
      personalizations: [
        {
          to: [{ email: "alice@inbox.test" }],
          cc: [{ email: "carol@inbox.test" }],
          bcc: [{ email: "hidden@inbox.test" }],
        },
      ],
      from: { email: "app@sender.test", name: "App" },
      subject: "Hello over SMTP",
      categories: ["smtp"],
      custom_args: { order: "42" },
    });
    // X-SMTPAPI is honoured and stripped, never passed on as a header.
    expect(JSON.stringify(call!.body.headers ?? {})).not.toMatch(/smtpapi/i);
  });

  it("takes AUTH LOGIN on the implicit-TLS port too", async () => {
    const server = await start();
    const info = await send(server, mail, { implicit: true, method: "LOGIN" });
    expect(info.response).toMatch(/^250 /);
    expect(mailSends()).toHaveLength(1);
  });

  it("sends a retried message with the same Idempotency-Key", async () => {
    const server = await start();
    const m = { ...mail, messageId: "<retry-1@app.test>" };
    await send(server, m);
    await send(server, m);
    const [first, second] = mailSends();
    expect(second!.idempotencyKey).toBe(first!.idempotencyKey);
  });

  it("asks the edge about a key once and remembers it for the next connection", async () => {
    const server = await start();
    await send(server);
    await send(server);
    expect(calls.filter((c) => c.path === "/v3/scopes")).toHaveLength(1);
    expect(mailSends()).toHaveLength(2);
  });
});

describe("AUTH", () => {
  it("refuses AUTH before STARTTLS with 538, and the key never reaches the edge", async () => {
    const server = await start();
    const r = await refused(server, mail, { plain: true });
    expect(r.code).toBe(538);
    expect(calls).toHaveLength(0);
  });

  it.each([
    ["another user name", { user: "someone" }, /user name is "apikey"/],
    ["an unknown key", { pass: "sg_live_00000000000000000000000000000000" }, /Invalid API key/],
    ["a key without mail.send", { pass: READ_ONLY_KEY }, /lacks mail\.send/],
  ])("answers 535 to %s", async (_what, o, why) => {
    const server = await start();
    const r = await refused(server, mail, o);
    expect(r.code).toBe(535);
    expect(r.response).toMatch(/^535 5\.7\.8 Authentication credentials invalid/);
    expect(r.response).toMatch(why);
    expect(mailSends()).toHaveLength(0);
  });

  it("answers 454 (try again) when the edge cannot be asked about the key", async () => {
    const metrics = createMetrics();
    const server = await start({
      edge: createEdgeClient({ edgeUrl: "http://127.0.0.1:9", timeoutMs: 2_000, keyCacheMs: 0 }),
      metrics,
    });
    const r = await refused(server);
    expect(r.code).toBe(454);
    // An AUTH the edge could not judge is an error, not a credentials failure (docs/operations.md).
    expect(metrics.submissionAuth.get({ listener: "starttls", result: "error" })).toBe(1);
    expect(metrics.submissionAuth.get({ listener: "starttls", result: "failure" })).toBe(0);
    expect(metrics.submissionRefusals.get({ code: "454" })).toBe(1);
  });

  it("without TLS configured takes AUTH in plaintext from a loopback client (development)", async () => {
    const server = await start({ tls: undefined, tlsPort: undefined });
    expect(server.tlsPort).toBeNull();
    const info = await send(server, mail, { plain: true });
    expect(info.response).toMatch(/^250 /);
  });
});

describe("edge answers → SMTP replies", () => {
  const edgeSays = (status: number, body: unknown) => (_c: EdgeCall, res: http.ServerResponse) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  it.each([
    [
      403,
      { errors: [{ field: "from.email", message: "Sender domain not verified: sender.test" }] },
      550,
      "550 5.7.1 from.email: Sender domain not verified: sender.test",
    ],
    [
      401,
      { detail: "Invalid API key" },
      535,
      "535 5.7.8 Authentication credentials invalid: Invalid API key",
    ],
    [
      413,
      { errors: [{ field: "content", message: "too large" }] },
      552,
      "552 5.3.4 Message too big: content: too large",
    ],
    [
      400,
      { errors: [{ field: "subject", message: "The subject is required." }] },
      550,
      "550 5.6.0 subject: The subject is required.",
    ],
    [
      422,
      { errors: [{ field: "Idempotency-Key", message: "already used" }] },
      554,
      "554 5.6.0 Idempotency-Key: already used",
    ],
    [429, { errors: [{ field: null, message: "too many requests" }] }, 451, "451 4.7.1 Rate limit reached"],
    [
      500,
      { detail: "Internal server error" },
      451,
      "451 4.3.0 The service could not accept the message now (HTTP 500)",
    ],
    [503, { detail: "hub unavailable" }, 451, "451 4.3.0"],
  ])("mail/send %i → %s", async (status, body, code, response) => {
    answer = edgeSays(status, body);
    const server = await start();
    const r = await refused(server);
    expect(r.code).toBe(code);
    expect(r.response.startsWith(response)).toBe(true);
  });

  it("names every message id of a 202 in the 250, or the first and a count when they do not fit a line", () => {
    expect(sendReply({ status: 202, body: { message_ids: ["msg_A", "msg_B"] } })).toEqual({
      ok: true,
      message: "2.0.0 Ok: queued as msg_A msg_B",
    });
    const many = Array.from({ length: 40 }, (_, i) => `msg_${String(i).padStart(26, "0")}`);
    expect(sendReply({ status: 202, body: { message_ids: many } })).toEqual({
      ok: true,
      message: `2.0.0 Ok: queued as ${many[0]} and 39 more`,
    });
  });

  it("answers 451 4.3.0 when the edge drops the connection during mail/send", async () => {
    answer = (_c, res) => res.socket?.destroy();
    const server = await start();
    const r = await refused(server);
    expect(r.code).toBe(451);
    expect(r.response).toMatch(/^451 4\.3\.0 The service is unreachable/);
  });

  it("answers 550 with the reason for what cannot be carried, without calling mail/send", async () => {
    const server = await start();
    const r = await refused(server, { ...mail, headers: { "X-SMTPAPI": '{"send_each_at":[1]}' } });
    expect(r.code).toBe(550);
    expect(r.response).toMatch(/send_each_at/);
    expect(mailSends()).toHaveLength(0);
  });
});

describe("limits", () => {
  it("refuses a message over SIZE with 552 and sends nothing", async () => {
    const server = await start({ maxMessageBytes: 4_096 });
    const r = await refused(server, { ...mail, text: "x".repeat(10_000) });
    expect(r.code).toBe(552);
    expect(mailSends()).toHaveLength(0);
  });

  it("answers 452 to recipients past the maximum; the accepted ones are sent", async () => {
    const server = await start({ maxRecipients: 2 });
    const info = await send(server, { ...mail, to: ["a@inbox.test", "b@inbox.test", "c@inbox.test"] });
    expect(info.accepted).toEqual(["a@inbox.test", "b@inbox.test"]);
    expect(info.rejected).toEqual(["c@inbox.test"]);
    expect(info.rejectedErrors?.[0]?.responseCode).toBe(452);
    expect(mailSends()[0]!.body.personalizations[0].to.map((a: { email: string }) => a.email)).toEqual([
      "a@inbox.test",
      "b@inbox.test",
    ]);
  });

  it("refuses an address after too many failed AUTHs (421), even with a good key, for the cool-down", async () => {
    const metrics = createMetrics();
    const server = await start({
      limits: { maxAuthFailures: 2, cooldownMs: 600_000, tarpitMs: 0, maxConnectionsPerKey: 20 },
      metrics,
    });
    expect((await refused(server, mail, { pass: "sg_live_bad" })).code).toBe(535);
    expect((await refused(server, mail, { pass: "sg_live_bad" })).code).toBe(421);
    const later = await refused(server);
    expect(later.code).toBe(421);
    expect(later.response).toMatch(/Too many failed authentications/);
    expect(mailSends()).toHaveLength(0);
    // Both bad keys are credentials failures (the second is the one that blocks the address); the
    // good key's AUTH never got past the block, and its connection was turned away at connect.
    expect(metrics.submissionAuth.get({ listener: "starttls", result: "failure" })).toBe(2);
    expect(metrics.submissionAuth.get({ listener: "starttls", result: "success" })).toBe(0);
    expect(metrics.submissionRefusals.get({ code: "535" })).toBe(1);
    expect(metrics.submissionRefusals.get({ code: "421" })).toBe(2);
  });

  it("lets one API key hold at most the configured number of connections", async () => {
    const metrics = createMetrics();
    const server = await start({
      limits: { maxAuthFailures: 5, cooldownMs: 60_000, tarpitMs: 0, maxConnectionsPerKey: 1 },
      metrics,
    });
    const login = async () => {
      const c = new SMTPConnection({
        host: "127.0.0.1",
        port: server.port!,
        requireTLS: true,
        tls: { ca: ca.cert, servername: "localhost" },
      });
      await new Promise<void>((resolve, reject) => {
        c.once("error", reject);
        c.connect(() => resolve());
      });
      const err = await new Promise<{ responseCode?: number } | null>((resolve) =>
        c.login({ user: "apikey", pass: GOOD_KEY }, (e) => resolve(e ?? null)),
      );
      return { c, err };
    };
    const first = await login();
    expect(first.err).toBeNull();
    const second = await login();
    expect(second.err?.responseCode).toBe(421);
    second.c.close();
    // The slot is the first connection's until it ends.
    await new Promise<void>((resolve) => {
      first.c.once("end", () => resolve());
      first.c.quit();
    });
    const third = await login();
    expect(third.err).toBeNull();
    third.c.quit();
    // The refused AUTH is "limited" on /metrics; the two that passed are successes.
    expect(metrics.submissionAuth.get({ listener: "starttls", result: "limited" })).toBe(1);
    expect(metrics.submissionAuth.get({ listener: "starttls", result: "success" })).toBe(2);
    expect(metrics.submissionRefusals.get({ code: "421" })).toBe(1);
  });
});
