/**
 * SMTP submission end to end (docs/smtp-submission.md): the origin's submission listener, started
 * from its SUBMISSION_* settings, in front of the real stack (wrangler dev edge, hub, origin node,
 * loopback DNS and recipient MX). nodemailer submits over STARTTLS with `apikey` and a real key
 * (certificate from a throw-away CA); the message is accepted through POST /v3/mail/send, reaches
 * the MX DKIM-signed and is listed by GET /v3/messages. A wrong key is 535, an unverified From 550,
 * and Debian's swaks submits one too.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import nodemailer from "nodemailer";
import type Mail from "nodemailer/lib/mailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { startSubmissionFromConfig, type SubmissionServer } from "../../origin/src/submission/index.ts";
import { mailauthResolver } from "../helpers/dns-server.ts";
import { createTestCa, type TestCa } from "../helpers/tls-ca.ts";
import { SENDER_DOMAIN, startStack, zoneFromDomain, type Stack } from "./stack.ts";

const run = promisify(execFile);

let stack: Stack;
let submission: SubmissionServer;
/** Without TLS settings: plaintext AUTH for loopback clients only, as `npm start` runs it. */
let loopbackSubmission: SubmissionServer;
let ca: TestCa;
let dir: string;

beforeAll(async () => {
  stack = await startStack();
  stack.publish(zoneFromDomain(stack.domain));
  expect((await stack.admin.verifyDomain(stack.tenantId, stack.domain.id)).verified).toBe(true);

  ca = createTestCa();
  const leaf = ca.issue(["localhost"]);
  dir = mkdtempSync(join(tmpdir(), "scaisend-submission-e2e-"));
  writeFileSync(join(dir, "key.pem"), leaf.key);
  writeFileSync(join(dir, "cert.pem"), leaf.cert);
  const settings = {
    EDGE_URL: stack.apiUrl,
    ORIGIN_TOKEN: stack.secrets.ORIGIN_TOKEN,
    VERP_SECRET: stack.secrets.VERP_SECRET,
    HELO_NAME: "submit.e2e.test",
    SUBMISSION_HOST: "127.0.0.1",
    SUBMISSION_PORT: "0",
    SUBMISSION_AUTH_TARPIT_MS: "0",
  };
  const start = async (env: NodeJS.ProcessEnv) => {
    const started = await startSubmissionFromConfig(loadOriginConfig(env), () => undefined);
    if (!started) throw new Error("submission did not start");
    return started;
  };
  submission = await start({
    ...settings,
    SUBMISSION_TLS_KEY_FILE: join(dir, "key.pem"),
    SUBMISSION_TLS_CERT_FILE: join(dir, "cert.pem"),
  });
  loopbackSubmission = await start(settings);
});

afterAll(async () => {
  await submission?.close();
  await loopbackSubmission?.close();
  await stack?.stop();
  ca?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function submit(m: Mail.Options, pass = stack.liveKey.api_key) {
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: submission.port!,
    secure: false,
    requireTLS: true,
    tls: { ca: ca.cert, servername: "localhost" },
    auth: { user: "apikey", pass },
  });
  try {
    return await transport.sendMail(m);
  } finally {
    transport.close();
  }
}

const queuedId = (response: string) => /queued as (msg_[0-9A-Z]{26})/.exec(response)?.[1];

describe("SMTP submission on the real stack", () => {
  it("delivers a nodemailer submission DKIM-signed, X-SMTPAPI honoured, and lists it on /v3/messages", async () => {
    const before = stack.smtp.messages.length;
    const info = await submit({
      from: `"SMTP App" <app@${SENDER_DOMAIN}>`,
      to: "alice@inbox.test",
      subject: "Submitted over SMTP",
      text: "plain over smtp",
      html: "<p>html over <b>smtp</b></p>",
      headers: { "X-Order": "1234", "X-SMTPAPI": JSON.stringify({ category: ["smtp-e2e"] }) },
    });
    const id = queuedId(info.response);
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as msg_/);
    expect(id).toBeDefined();

    const message = await stack.waitForStatus(id!, ["delivered", "bounced", "failed"]);
    expect(message.status).toBe("delivered");
    expect(message.categories).toEqual(["smtp-e2e"]);
    const received = stack.smtp.messages.slice(before).find((m) => m.rcptTo.includes("alice@inbox.test"));
    expect(received).toBeDefined();
    const raw = received!.raw.toString("utf8");
    expect(raw).toContain("Subject: Submitted over SMTP");
    expect(raw).toContain("X-Order: 1234");
    expect(raw).not.toMatch(/^X-SMTPAPI:/im);
    const dkim = await dkimVerify(received!.raw, { resolver: mailauthResolver(stack.dns.server) });
    expect(dkim.results[0]).toMatchObject({ signingDomain: SENDER_DOMAIN, status: { result: "pass" } });

    const list = await stack.api("GET", "/v3/messages?category=smtp-e2e", stack.liveKey.api_key);
    expect(list.status).toBe(200);
    expect(list.body.messages.map((m: { id: string }) => m.id)).toContain(id);
  });

  it("answers 535 at AUTH to a wrong key", async () => {
    const err = await submit(
      { from: `app@${SENDER_DOMAIN}`, to: "bob@inbox.test", subject: "x", text: "x" },
      "sg_live_00000000000000000000000000000000",
    ).catch((e: { responseCode?: number; response?: string }) => e);
    expect(err).toMatchObject({ responseCode: 535 });
    expect((err as { response: string }).response).toMatch(/Invalid API key/);
  });

  it("answers 550 5.7.1 to a From on a domain the tenant has not verified", async () => {
    const err = await submit({
      from: "app@unverified.test",
      to: "bob@inbox.test",
      subject: "x",
      text: "x",
    }).catch((e: { responseCode?: number; response?: string }) => e);
    expect(err).toMatchObject({ responseCode: 550 });
    expect((err as { response: string }).response).toMatch(
      /^550 5\.7\.1 from\.email: Sender domain not verified/,
    );
  });

  // The command line `npm start` prints (scripts/dev.ts). swaks' TLS needs Perl's IO::Socket::SSL,
  // which Debian's swaks only recommends; the TLS listener is covered by nodemailer above.
  it("takes a submission from swaks (AUTH PLAIN on the loopback listener) and delivers it", async () => {
    const before = stack.smtp.messages.length;
    const { stdout } = await run("swaks", [
      "--server",
      "127.0.0.1",
      "--port",
      String(loopbackSubmission.port),
      "--auth",
      "PLAIN",
      "--auth-user",
      "apikey",
      "--auth-password",
      stack.liveKey.api_key,
      "--from",
      `app@${SENDER_DOMAIN}`,
      "--to",
      "carol@inbox.test",
      "--header",
      "Subject: Sent with swaks",
      "--body",
      "swaks body",
    ]);
    const id = queuedId(stdout);
    expect(id).toBeDefined();
    const message = await stack.waitForStatus(id!, ["delivered", "bounced", "failed"]);
    expect(message.status).toBe("delivered");
    const received = stack.smtp.messages.slice(before).find((m) => m.rcptTo.includes("carol@inbox.test"));
    expect(received!.raw.toString("utf8")).toContain("Subject: Sent with swaks");
  });
});
