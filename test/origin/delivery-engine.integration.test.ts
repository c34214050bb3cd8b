// The delivery engine end to end against real servers on loopback: a DNS server for MX and DKIM
// keys, smtp-server instances as recipients' MX hosts. Nothing is mocked.
import { generateKeyPairSync } from "node:crypto";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { createDeliveryEngine, type DeliveryEngineOptions } from "../../origin/src/delivery/engine.ts";
import { decodeVerp } from "../../origin/src/delivery/verp.ts";
import { mailauthResolver, startDnsServer, type DnsZone, type TestDnsServer } from "../helpers/dns-server.ts";
import {
  createSelfSignedCert,
  startFlakyServer,
  startRejectingServer,
  startSinkServer,
  type TestSmtpServer,
} from "../helpers/smtp-servers.ts";

const VERP_SECRET = "verp-secret-for-tests";

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ed = generateKeyPairSync("ed25519");
const rsaPrivatePem = rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const edPrivatePem = ed.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const rsaPublicB64 = rsa.publicKey.export({ type: "spki", format: "der" }).toString("base64");
// RFC 8463 §4.2: an ed25519 DKIM key record carries the raw 32-byte public key, not the SPKI wrapper.
const edPublicB64 = ed.publicKey.export({ type: "spki", format: "der" }).subarray(-32).toString("base64");

const ZONE: DnsZone = {
  "rsa._domainkey.sender.test": { TXT: [`v=DKIM1; k=rsa; p=${rsaPublicB64}`] },
  "ed._domainkey.sender.test": { TXT: [`v=DKIM1; k=ed25519; p=${edPublicB64}`] },
  "dest.test": { MX: [{ preference: 10, exchange: "mx.dest.test" }] },
  "other.test": { MX: [{ preference: 10, exchange: "mx.other.test" }] },
  "mx.dest.test": { A: ["127.0.0.1"] },
  "mx.other.test": { A: ["127.0.0.1"] },
  // Preference 10 resolves to an address nobody listens on (127.0.0.2 is loopback too, so the
  // connection is refused at once); preference 20 is the live server.
  "fallback.test": {
    MX: [
      { preference: 20, exchange: "mx2.fallback.test" },
      { preference: 10, exchange: "mx1.fallback.test" },
    ],
  },
  "mx1.fallback.test": { A: ["127.0.0.2"] },
  "mx2.fallback.test": { A: ["127.0.0.1"] },
  // Both MX hosts reach the same server, which refuses the first connection with a 421 greeting.
  "busy.test": {
    MX: [
      { preference: 10, exchange: "mx1.busy.test" },
      { preference: 20, exchange: "mx2.busy.test" },
    ],
  },
  "mx1.busy.test": { A: ["127.0.0.1"] },
  "mx2.busy.test": { A: ["127.0.0.1"] },
  "down.test": { MX: [{ preference: 10, exchange: "mx.down.test" }] },
  "mx.down.test": { A: ["127.0.0.2"] },
  "nullmx.test": { MX: [{ preference: 0, exchange: "." }] },
  // MX targets that are not public (issue 6, item 14). Only the loopback ones are ever connected
  // to, and only when the test allows private MX.
  "loop.test": { MX: [{ preference: 10, exchange: "mx.loop.test" }] },
  "mx.loop.test": { A: ["127.0.0.1"] },
  "rfc1918.test": { MX: [{ preference: 10, exchange: "mx.rfc1918.test" }] },
  "mx.rfc1918.test": { A: ["10.20.30.40"] },
  "imds.test": { MX: [{ preference: 10, exchange: "mx.imds.test" }] },
  "mx.imds.test": { A: ["169.254.169.254"] },
  // No MX: the implicit MX is the domain's own AAAA, an IPv4-mapped loopback address.
  "mapped.test": { AAAA: ["::ffff:127.0.0.1"] },
};

let dns: TestDnsServer;
const servers: TestSmtpServer[] = [];
const engines: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: ZONE });
});
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  await Promise.all(servers.map((s) => s.close()));
  await dns.close();
});

async function track(server: Promise<TestSmtpServer>): Promise<TestSmtpServer> {
  const s = await server;
  servers.push(s);
  return s;
}

function engineFor(port: number, extra: Partial<DeliveryEngineOptions> = {}) {
  const engine = createDeliveryEngine({
    heloName: "origin.sender.test",
    smtpPort: port,
    dnsServers: [dns.server],
    verpSecret: VERP_SECRET,
    connectTimeoutMs: 2_000,
    maxConnectionsPerHost: 2,
    allowPrivateMx: true, // loopback stands in for the recipients' MX hosts
    ...extra,
  });
  engines.push(engine);
  return engine;
}

let seq = 0;
function job(
  recipients: string[],
  dkim: DeliveryJob["dkim"] = { domain: "sender.test", selector: "rsa", privateKeyPem: rsaPrivatePem },
): DeliveryJob {
  const messageId = `msg_${++seq}`;
  return {
    jobId: `${messageId}.1`,
    messageId,
    tenantId: "t_1",
    attempt: 1,
    recipients,
    message: {
      from: { email: "news@sender.test", name: "Sender" },
      to: recipients.map((email) => ({ email })),
      replyTo: [{ email: "help@sender.test" }],
      subject: "Integration ✓",
      text: "Hello there",
      html: "<p>Hello there</p>",
      headers: { "X-Tenant": "t_1" },
      messageIdHeader: `${messageId}@sender.test`,
    },
    dkim,
  };
}

const verify = (raw: Buffer) => dkimVerify(raw, { resolver: mailauthResolver(dns.server) });

describe("delivery engine against loopback DNS and SMTP", () => {
  it("delivers, with a VERP return path and an rsa-sha256 DKIM signature that verifies", async () => {
    const sink = await track(startSinkServer());
    const engine = engineFor(sink.port);
    const j = job(["alice@dest.test", "bob@dest.test"]);
    const outcomes = await engine.deliver(j);

    expect(outcomes).toHaveLength(2);
    for (const [i, outcome] of outcomes.entries()) {
      expect(outcome).toMatchObject({
        recipient: j.recipients[i],
        status: "delivered",
        smtpCode: 250,
        mxHost: "mx.dest.test",
        tls: false,
      });
      expect(outcome.latencyMs).toBeGreaterThanOrEqual(0);
    }
    // One transaction for the domain, both recipients in it.
    expect(sink.messages).toHaveLength(1);
    const [message] = sink.messages;
    expect(message?.rcptTo).toEqual(["alice@dest.test", "bob@dest.test"]);
    expect(message?.mailFrom).toMatch(/^bounces\+msg_\d+\.[a-z2-7]{10}@sender\.test$/);
    expect(decodeVerp(message?.mailFrom ?? "", { secret: VERP_SECRET })).toEqual({ messageId: j.messageId });

    const result = await verify(message!.raw);
    expect(result.results).toHaveLength(1);
    expect(result.results[0]).toMatchObject({
      signingDomain: "sender.test",
      selector: "rsa",
      algo: "rsa-sha256",
      format: "relaxed/relaxed",
    });
    expect(result.results[0]?.status.result).toBe("pass");
    const signed = result.results[0]?.signingHeaders?.keys.toLowerCase().split(/\s*:\s*/) ?? [];
    expect(signed).toEqual(
      expect.arrayContaining([
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "reply-to",
      ]),
    );
  });

  it("signs with ed25519-sha256 when the key is ed25519", async () => {
    const sink = await track(startSinkServer());
    const outcomes = await engineFor(sink.port).deliver(
      job(["carol@dest.test"], { domain: "sender.test", selector: "ed", privateKeyPem: edPrivatePem }),
    );
    expect(outcomes[0]?.status).toBe("delivered");
    const result = await verify(sink.messages[0]!.raw);
    expect(result.results[0]).toMatchObject({ algo: "ed25519-sha256" });
    expect(result.results[0]?.status.result).toBe("pass");
  });

  it("a signature made with a key that does not match DNS fails verification (the check can fail)", async () => {
    const sink = await track(startSinkServer());
    const otherKey = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    await engineFor(sink.port).deliver(
      job(["dave@dest.test"], { domain: "sender.test", selector: "rsa", privateKeyPem: otherKey }),
    );
    const result = await verify(sink.messages[0]!.raw);
    expect(result.results[0]?.status.result).toBe("fail");
  });

  it("uses STARTTLS when the server offers it → tls: true", async () => {
    const sink = await track(startSinkServer({ tls: createSelfSignedCert("mx.dest.test") }));
    const outcomes = await engineFor(sink.port).deliver(job(["erin@dest.test"]));
    expect(outcomes[0]).toMatchObject({ status: "delivered", tls: true });
    expect(sink.messages[0]?.secure).toBe(true);
  });

  it("4xx at RCPT → deferred with the server's codes; the next attempt delivers", async () => {
    const flaky = await track(startFlakyServer({ failures: 1, stage: "rcpt" }));
    const engine = engineFor(flaky.port);
    const first = await engine.deliver(job(["frank@dest.test"]));
    expect(first[0]).toMatchObject({
      status: "deferred",
      smtpCode: 451,
      enhancedCode: "4.7.1",
      mxHost: "mx.dest.test",
    });
    expect(first[0]?.response).toContain("Greylisted");
    expect(first[0]?.bounceType).toBeUndefined();
    expect(flaky.messages).toHaveLength(0);

    const second = await engine.deliver(job(["frank@dest.test"]));
    expect(second[0]?.status).toBe("delivered");
    expect(flaky.messages).toHaveLength(1);
  });

  it("4xx after DATA → deferred", async () => {
    const flaky = await track(
      startFlakyServer({
        failures: 1,
        stage: "data",
        reply: { code: 452, message: "4.3.1 Insufficient system storage" },
      }),
    );
    const outcomes = await engineFor(flaky.port).deliver(job(["gina@dest.test"]));
    expect(outcomes[0]).toMatchObject({ status: "deferred", smtpCode: 452, enhancedCode: "4.3.1" });
  });

  it("5xx 5.1.1 at RCPT → bounced hard for that recipient only, the other is delivered", async () => {
    const server = await track(
      startRejectingServer({
        reply: { code: 550, message: "5.1.1 <nobody@dest.test>: user unknown" },
        reject: (a) => a.startsWith("nobody@"),
      }),
    );
    const outcomes = await engineFor(server.port).deliver(job(["nobody@dest.test", "henry@dest.test"]));
    expect(outcomes[0]).toMatchObject({
      recipient: "nobody@dest.test",
      status: "bounced",
      bounceType: "hard",
      smtpCode: 550,
      enhancedCode: "5.1.1",
    });
    expect(outcomes[1]).toMatchObject({ recipient: "henry@dest.test", status: "delivered", smtpCode: 250 });
    expect(server.messages[0]?.rcptTo).toEqual(["henry@dest.test"]);
  });

  it("5.7.1 policy rejection of every recipient → bounced block", async () => {
    const server = await track(
      startRejectingServer({
        reply: { code: 554, message: "5.7.1 Client host rejected: blocked using zen.spamhaus.org" },
      }),
    );
    const outcomes = await engineFor(server.port).deliver(job(["ivy@dest.test", "jack@dest.test"]));
    for (const outcome of outcomes)
      expect(outcome).toMatchObject({ status: "bounced", bounceType: "block", enhancedCode: "5.7.1" });
    expect(server.messages).toHaveLength(0);
  });

  it("null MX → bounced hard without any SMTP connection", async () => {
    const sink = await track(startSinkServer());
    const outcomes = await engineFor(sink.port).deliver(job(["kim@nullmx.test"]));
    expect(outcomes[0]).toMatchObject({ status: "bounced", bounceType: "hard", enhancedCode: "5.1.10" });
    expect(sink.connections).toBe(0);
  });

  it("NXDOMAIN recipient domain → bounced hard", async () => {
    const sink = await track(startSinkServer());
    const outcomes = await engineFor(sink.port).deliver(job(["lee@no-such-domain.test"]));
    expect(outcomes[0]).toMatchObject({ status: "bounced", bounceType: "hard" });
    expect(sink.connections).toBe(0);
  });

  it("falls back to the next MX by priority when the first refuses connections", async () => {
    const sink = await track(startSinkServer());
    const outcomes = await engineFor(sink.port).deliver(job(["mia@fallback.test"]));
    expect(outcomes[0]).toMatchObject({ status: "delivered", mxHost: "mx2.fallback.test" });
    expect(sink.messages).toHaveLength(1);
  });

  it("moves on to the next MX after a 421 greeting", async () => {
    const flaky = await track(
      startFlakyServer({
        failures: 1,
        stage: "connect",
        reply: { code: 421, message: "4.3.2 Too busy, try later" },
      }),
    );
    const outcomes = await engineFor(flaky.port).deliver(job(["ned@busy.test"]));
    expect(outcomes[0]).toMatchObject({ status: "delivered", mxHost: "mx2.busy.test" });
    expect(flaky.connections).toBe(2);
  });

  it("every MX unreachable → deferred, no SMTP code", async () => {
    const sink = await track(startSinkServer());
    const outcomes = await engineFor(sink.port).deliver(job(["olga@down.test"]));
    expect(outcomes[0]).toMatchObject({ status: "deferred", mxHost: "mx.down.test", tls: false });
    expect(outcomes[0]?.smtpCode).toBeUndefined();
  });

  it("groups recipients by domain: one transaction per domain, outcomes in job order", async () => {
    const sink = await track(startSinkServer());
    const j = job(["p@dest.test", "q@other.test", "r@dest.test", "s@nullmx.test"]);
    const outcomes = await engineFor(sink.port).deliver(j);
    expect(outcomes.map((o) => [o.recipient, o.status])).toEqual([
      ["p@dest.test", "delivered"],
      ["q@other.test", "delivered"],
      ["r@dest.test", "delivered"],
      ["s@nullmx.test", "bounced"],
    ]);
    expect(sink.messages.map((m) => m.rcptTo).sort()).toEqual([
      ["p@dest.test", "r@dest.test"],
      ["q@other.test"],
    ]);
    // Built and signed once: both domains received identical bytes.
    expect(sink.messages[0]?.raw.equals(sink.messages[1]!.raw)).toBe(true);
  });

  it("a message that cannot be signed → failed for every recipient, nothing sent", async () => {
    const sink = await track(startSinkServer());
    const outcomes = await engineFor(sink.port).deliver(
      job(["tom@dest.test"], { domain: "sender.test", selector: "rsa", privateKeyPem: "not a key" }),
    );
    expect(outcomes[0]).toMatchObject({ recipient: "tom@dest.test", status: "failed" });
    expect(outcomes[0]?.response).toMatch(/DKIM/);
    expect(sink.connections).toBe(0);
  });

  it("a job that reaches a closed engine (a draining node) is deferred, never failed, and nothing is sent", async () => {
    const sink = await track(startSinkServer());
    const engine = engineFor(sink.port, { composeThreads: 1 });
    await engine.close();
    const outcomes = await engine.deliver(job(["vic@dest.test", "wes@dest.test"]));
    expect(outcomes.map((o) => [o.recipient, o.status])).toEqual([
      ["vic@dest.test", "deferred"],
      ["wes@dest.test", "deferred"],
    ]);
    expect(outcomes[0]?.response).toBe("the delivery node is shutting down");
    expect(sink.connections).toBe(0);
  });

  it("a smarthost bypasses MX resolution entirely", async () => {
    const sink = await track(startSinkServer());
    const engine = engineFor(1, {
      smarthost: { host: "127.0.0.1", port: sink.port },
      dnsServers: ["127.0.0.1:9"],
    });
    const outcomes = await engine.deliver(job(["uma@nullmx.test"], null));
    expect(outcomes[0]).toMatchObject({ status: "delivered", mxHost: "127.0.0.1" });
    expect(sink.messages[0]?.raw.toString()).not.toMatch(/^DKIM-Signature:/m);
    // Without a DKIM key the return path falls back to the From domain.
    expect(sink.messages[0]?.mailFrom).toMatch(/@sender\.test$/);
  });
});

describe("MX targets that are not public (issue 6, item 14)", () => {
  it.each([
    ["loop.test", "127.0.0.1"],
    ["rfc1918.test", "10.20.30.40"],
    ["imds.test", "169.254.169.254"],
    ["mapped.test", "::ffff:127.0.0.1"],
  ])("%s (%s) is refused by default: bounced 5.4.4, no connection made", async (domain, address) => {
    const sink = await track(startSinkServer());
    const [outcome] = await engineFor(sink.port, { allowPrivateMx: false }).deliver(job([`rcpt@${domain}`]));
    expect(outcome).toMatchObject({ status: "bounced", bounceType: "hard", enhancedCode: "5.4.4" });
    expect(outcome?.response).toContain("no public address to deliver mail for");
    expect(outcome?.response).toContain(address.startsWith("::ffff:") ? "::ffff:" : address);
    expect(sink.connections).toBe(0);
  });

  it.each(["loop.test", "mapped.test"])("%s is delivered when ALLOW_PRIVATE_MX allows it", async (domain) => {
    const sink = await track(startSinkServer());
    const [outcome] = await engineFor(sink.port, { allowPrivateMx: true }).deliver(job([`rcpt@${domain}`]));
    expect(outcome).toMatchObject({ status: "delivered" });
    expect(sink.connections).toBe(1);
  });

  it("the smarthost is the operator's choice and is not screened", async () => {
    const sink = await track(startSinkServer());
    const engine = engineFor(1, { allowPrivateMx: false, smarthost: { host: "127.0.0.1", port: sink.port } });
    const [outcome] = await engine.deliver(job(["rcpt@rfc1918.test"]));
    expect(outcome).toMatchObject({ status: "delivered", mxHost: "127.0.0.1" });
  });
});
