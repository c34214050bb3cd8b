/**
 * TLS on outbound delivery, end to end through the delivery engine (docs/operations.md, "TLS and
 * MTA-STS"): opportunistic STARTTLS without a policy (offered, not offered, broken), and MTA-STS
 * (RFC 8461 §5) enforce and testing policies against scripted SMTP servers with good, self-signed
 * and wrongly named certificates. Real parts only: a loopback DNS server, an HTTPS policy server,
 * smtp-server MX hosts, and a test CA the engine trusts as MTA_STS_CA_FILE would make it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryJob, RecipientOutcome } from "../../shared/link/protocol.ts";
import { RecipientOutcomeSchema } from "../../shared/link/protocol.ts";
import { createDeliveryEngine, type DeliveryEngineOptions } from "../../origin/src/delivery/engine.ts";
import { startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";
import { startPolicyServer, type TestPolicyServer } from "../helpers/mta-sts-server.ts";
import {
  createSelfSignedCert,
  startSmtpServer,
  type SmtpBehaviour,
  type TestSmtpServer,
} from "../helpers/smtp-servers.ts";
import { createTestCa, type TestCa } from "../helpers/tls-ca.ts";

/** Each case is its own recipient domain `<name>.test` with MX `mx.<name>.test` (or as listed). */
const POLICY_DOMAINS = {
  "enforce-ok": "enforce",
  "enforce-selfsigned": "enforce",
  "enforce-wrongname": "enforce",
  "enforce-notls": "enforce",
  "enforce-broken": "enforce",
  "enforce-unlisted": "enforce",
  "enforce-second": "enforce",
  "enforce-off": "enforce",
  "testing-selfsigned": "testing",
  "testing-notls": "testing",
  "none-mode": "none",
  "slow-policy": "enforce",
  "shared-enforce": "enforce",
} as const;
const PLAIN_DOMAINS = ["offered", "notoffered", "broken"];

const policyBody = (mode: string, mx: string[]) =>
  ["version: STSv1", `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), "max_age: 86400", ""].join("\n");

let ca: TestCa;
let dns: TestDnsServer;
let policies: TestPolicyServer;
const servers: TestSmtpServer[] = [];
const engines: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  ca = createTestCa();
  const zone: DnsZone = {};
  for (const name of [...Object.keys(POLICY_DOMAINS), ...PLAIN_DOMAINS]) {
    zone[`${name}.test`] = { MX: [{ preference: 10, exchange: `mx.${name}.test` }] };
    zone[`mx.${name}.test`] = { A: ["127.0.0.1"] };
  }
  // Two MX hosts, the preferred one not in the policy: only the second may be used.
  zone["enforce-second.test"] = {
    MX: [
      { preference: 10, exchange: "rogue.enforce-second.net" },
      { preference: 20, exchange: "mx.enforce-second.test" },
    ],
  };
  zone["rogue.enforce-second.net"] = { A: ["127.0.0.1"] };
  // Two domains on one MX host: one without a policy, one enforcing (shared-enforce, below).
  zone["shared-plain.test"] = { MX: [{ preference: 10, exchange: "mx.shared.test" }] };
  zone["shared-enforce.test"] = { MX: [{ preference: 10, exchange: "mx.shared.test" }] };
  zone["mx.shared.test"] = { A: ["127.0.0.1"] };
  policies = await startPolicyServer(ca.issue(Object.keys(POLICY_DOMAINS).map((d) => `mta-sts.${d}.test`)));
  for (const [name, mode] of Object.entries(POLICY_DOMAINS)) {
    zone[`_mta-sts.${name}.test`] = { TXT: [`v=STSv1; id=${name.replace(/-/g, "")}1`] };
    zone[`mta-sts.${name}.test`] = { A: ["127.0.0.1"] };
    // "*.name.test" covers mx.name.test; enforce-unlisted lists a host its MX is not.
    const mx =
      name === "enforce-unlisted"
        ? ["mail.elsewhere.test"]
        : name === "shared-enforce"
          ? ["mx.shared.test"]
          : [`*.${name}.test`];
    policies.set(`mta-sts.${name}.test`, { body: policyBody(mode, mode === "none" ? [] : mx) });
  }
  policies.set("mta-sts.slow-policy.test", { hang: true });
  dns = await startDnsServer({ records: zone });
});
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  await Promise.all(servers.map((s) => s.close()));
  await Promise.all([policies.close(), dns.close()]);
  ca.dispose();
});

async function mx(behaviour: SmtpBehaviour): Promise<TestSmtpServer> {
  const server = await startSmtpServer(behaviour);
  servers.push(server);
  return server;
}

function engineFor(port: number, extra: Partial<DeliveryEngineOptions> = {}) {
  const engine = createDeliveryEngine({
    heloName: "origin.sender.test",
    smtpPort: port,
    dnsServers: [dns.server],
    verpSecret: "verp-secret-for-tests",
    connectTimeoutMs: 2_000,
    maxConnectionsPerHost: 2,
    allowPrivateMx: true, // loopback stands in for MX and policy hosts
    tlsCa: ca.cert,
    mtaStsPort: policies.port,
    ...extra,
  });
  engines.push(engine);
  return engine;
}

let seq = 0;
function job(recipient: string): DeliveryJob {
  const messageId = `msg_tls${++seq}`;
  return {
    jobId: `${messageId}.1`,
    messageId,
    tenantId: "t_1",
    attempt: 1,
    recipients: [recipient],
    message: {
      from: { email: "news@sender.test" },
      to: [{ email: recipient }],
      subject: "TLS",
      text: "Hello",
      headers: {},
      messageIdHeader: `${messageId}@sender.test`,
    },
    dkim: null,
  };
}

async function deliverTo(domain: string, server: TestSmtpServer, extra: Partial<DeliveryEngineOptions> = {}) {
  const [outcome] = await engineFor(server.port, extra).deliver(job(`rcpt@${domain}`));
  // Whatever it says, the outcome fits the link protocol (the new fields included).
  expect(RecipientOutcomeSchema.safeParse(outcome).success).toBe(true);
  return outcome as RecipientOutcome;
}

const TLS_VERSION = /^TLSv1\.[23]$/;

describe("opportunistic STARTTLS without a policy", () => {
  it("offered → used, and the outcome says so with its version", async () => {
    const server = await mx({ tls: createSelfSignedCert("mx.offered.test") });
    const outcome = await deliverTo("offered.test", server);
    expect(outcome).toMatchObject({ status: "delivered", tls: true, mxHost: "mx.offered.test" });
    expect(outcome.tlsVersion).toMatch(TLS_VERSION);
    expect(outcome.mtaSts).toBeUndefined();
    expect(server.messages[0]?.secure).toBe(true);
  });

  it("not offered → delivered in plaintext, tls false and no version", async () => {
    const server = await mx({});
    const outcome = await deliverTo("notoffered.test", server);
    expect(outcome).toMatchObject({ status: "delivered", tls: false });
    expect(outcome.tlsVersion).toBeUndefined();
    expect(server.messages[0]?.secure).toBe(false);
  });

  it("broken (the handshake fails) → the same host again in plaintext, delivered", async () => {
    const server = await mx({ tls: createSelfSignedCert("mx.broken.test"), tlsMaxVersion: "TLSv1.1" });
    const outcome = await deliverTo("broken.test", server);
    expect(outcome).toMatchObject({ status: "delivered", tls: false });
    expect(server.connections).toBe(2);
    expect(server.messages).toHaveLength(1);
  });
});

describe("MTA-STS enforce: TLS required, certificate valid for a listed MX", () => {
  it("a certificate from a trusted CA for the MX name → delivered over TLS, version reported", async () => {
    const server = await mx({ tls: ca.issue(["mx.enforce-ok.test"]) });
    const outcome = await deliverTo("enforce-ok.test", server);
    expect(outcome).toMatchObject({
      status: "delivered",
      tls: true,
      mxHost: "mx.enforce-ok.test",
      mtaSts: { mode: "enforce" },
    });
    expect(outcome.mtaSts?.failure).toBeUndefined();
    expect(outcome.tlsVersion).toMatch(TLS_VERSION);
    expect(server.messages).toHaveLength(1);
    expect(server.messages[0]?.secure).toBe(true);
  });

  it("a self-signed certificate → deferred (4.7.5), not bounced, and nothing reaches the server", async () => {
    const server = await mx({ tls: createSelfSignedCert("mx.enforce-selfsigned.test") });
    const outcome = await deliverTo("enforce-selfsigned.test", server);
    expect(outcome).toMatchObject({ status: "deferred", enhancedCode: "4.7.5", tls: false });
    expect(outcome.bounceType).toBeUndefined();
    expect(outcome.response).toMatch(
      /^MTA-STS policy for enforce-selfsigned\.test requires TLS with a valid certificate from a listed MX host: no valid TLS with mx\.enforce-selfsigned\.test/,
    );
    expect(outcome.mtaSts).toMatchObject({ mode: "enforce", failure: expect.stringMatching(/certificate/i) });
    expect(server.connections).toBe(1); // tried once, no plaintext retry
    expect(server.messages).toHaveLength(0);
  });

  it("a trusted certificate for another name → deferred, nothing delivered", async () => {
    const server = await mx({ tls: ca.issue(["mx.somewhere-else.test"]) });
    const outcome = await deliverTo("enforce-wrongname.test", server);
    expect(outcome).toMatchObject({ status: "deferred", enhancedCode: "4.7.5" });
    expect(outcome.mtaSts?.failure).toMatch(/mx\.enforce-wrongname\.test/);
    expect(server.messages).toHaveLength(0);
  });

  it("STARTTLS not offered → deferred (required), nothing delivered in plaintext", async () => {
    const server = await mx({});
    const outcome = await deliverTo("enforce-notls.test", server);
    expect(outcome).toMatchObject({ status: "deferred", enhancedCode: "4.7.5" });
    expect(outcome.response).toMatch(/MTA-STS policy for enforce-notls\.test requires TLS/);
    expect(server.messages).toHaveLength(0);
  });

  it("a broken handshake → deferred, without the plaintext fallback", async () => {
    const server = await mx({ tls: ca.issue(["mx.enforce-broken.test"]), tlsMaxVersion: "TLSv1.1" });
    const outcome = await deliverTo("enforce-broken.test", server);
    expect(outcome).toMatchObject({ status: "deferred", enhancedCode: "4.7.5" });
    expect(server.connections).toBe(1);
    expect(server.messages).toHaveLength(0);
  });

  it("an MX host the policy does not list is never connected to", async () => {
    const server = await mx({ tls: ca.issue(["mx.enforce-unlisted.test"]) });
    const outcome = await deliverTo("enforce-unlisted.test", server);
    expect(outcome).toMatchObject({ status: "deferred", enhancedCode: "4.7.5" });
    expect(outcome.response).toMatch(
      /MX host mx\.enforce-unlisted\.test is not listed in the policy \(mx: mail\.elsewhere\.test\)/,
    );
    expect(server.connections).toBe(0);
  });

  it("with a preferred MX outside the policy, the listed one is used", async () => {
    const server = await mx({ tls: ca.issue(["mx.enforce-second.test", "rogue.enforce-second.net"]) });
    const outcome = await deliverTo("enforce-second.test", server);
    expect(outcome).toMatchObject({ status: "delivered", mxHost: "mx.enforce-second.test", tls: true });
    expect(server.connections).toBe(1);
  });

  it("an unverified session kept idle for another domain on the same MX is not reused for an enforced one", async () => {
    const server = await mx({ tls: createSelfSignedCert("mx.shared.test") });
    const engine = engineFor(server.port);
    const [plain] = await engine.deliver(job("rcpt@shared-plain.test"));
    expect(plain).toMatchObject({ status: "delivered", tls: true }); // opportunistic, left idle
    expect(engine.stats().idle).toBe(1);
    const [enforced] = await engine.deliver(job("rcpt@shared-enforce.test"));
    expect(enforced).toMatchObject({ status: "deferred", enhancedCode: "4.7.5" });
    expect(server.messages.map((m) => m.rcptTo)).toEqual([["rcpt@shared-plain.test"]]);
  });

  it("MTA_STS=false (mtaSts: false) ignores the policy: a self-signed MX gets the mail opportunistically", async () => {
    const server = await mx({ tls: createSelfSignedCert("mx.enforce-off.test") });
    const outcome = await deliverTo("enforce-off.test", server, { mtaSts: false });
    expect(outcome).toMatchObject({ status: "delivered", tls: true });
    expect(outcome.mtaSts).toBeUndefined();
    expect(policies.requests.some((r) => r.host === "mta-sts.enforce-off.test")).toBe(false);
  });
});

describe("the job deadline", () => {
  it("a policy fetch still running at the deadline → deferred, saying so, and nothing sent", async () => {
    const server = await mx({ tls: ca.issue(["mx.slow-policy.test"]) });
    const engine = engineFor(server.port);
    const [outcome] = await engine.deliver(job("rcpt@slow-policy.test"), { deadlineAt: Date.now() + 600 });
    expect(outcome).toMatchObject({
      status: "deferred",
      response: "job deadline reached before the MTA-STS policy look-up for slow-policy.test finished",
    });
    expect(policies.requests.some((r) => r.host === "mta-sts.slow-policy.test")).toBe(true);
    expect(server.connections).toBe(0);
  });
});

describe("MTA-STS testing: delivered as without a policy, the shortfall reported", () => {
  it("a self-signed certificate → delivered over TLS, the certificate failure in mtaSts.failure", async () => {
    const server = await mx({ tls: createSelfSignedCert("mx.testing-selfsigned.test") });
    const outcome = await deliverTo("testing-selfsigned.test", server);
    expect(outcome).toMatchObject({ status: "delivered", tls: true, mtaSts: { mode: "testing" } });
    expect(outcome.mtaSts?.failure).toMatch(/certificate of mx\.testing-selfsigned\.test is not valid/);
    expect(server.messages).toHaveLength(1);
  });

  it("no STARTTLS → delivered in plaintext, reported", async () => {
    const server = await mx({});
    const outcome = await deliverTo("testing-notls.test", server);
    expect(outcome).toMatchObject({
      status: "delivered",
      tls: false,
      mtaSts: { mode: "testing", failure: "mx.testing-notls.test did not offer STARTTLS" },
    });
  });

  it("mode none is no policy: opportunistic, nothing reported", async () => {
    const server = await mx({ tls: createSelfSignedCert("mx.none-mode.test") });
    const outcome = await deliverTo("none-mode.test", server);
    expect(outcome).toMatchObject({ status: "delivered", tls: true });
    expect(outcome.mtaSts).toBeUndefined();
    expect(policies.requests.some((r) => r.host === "mta-sts.none-mode.test")).toBe(true); // it was fetched
  });
});
