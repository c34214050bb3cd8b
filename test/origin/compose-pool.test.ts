/**
 * The compose pool (origin/src/compose/pool.ts): real worker threads loading the TypeScript sources
 * (under vitest, through `--import tsx`), and the delivery engine using it against a loopback DNS
 * server and SMTP sink. Errors come back as values, a dead worker is replaced (its requests retried
 * once, a request that kills its worker twice fails with the reason, and takes no bystander with it
 * the second time), close() drains what is queued and leaves no thread behind.
 */
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { dkimVerify } from "mailauth/lib/dkim/verify.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryJob } from "../../shared/link/protocol.ts";
import { createComposePool, type ComposePool } from "../../origin/src/compose/pool.ts";
import { createDeliveryEngine } from "../../origin/src/delivery/engine.ts";
import { mailauthResolver, startDnsServer, type TestDnsServer } from "../helpers/dns-server.ts";
import { startSinkServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const rsaPem = rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const rsaPublic = rsa.publicKey.export({ type: "spki", format: "der" }).toString("base64");

let dns: TestDnsServer;
let sink: TestSmtpServer;
const pools: ComposePool[] = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-pool-"));

beforeAll(async () => {
  dns = await startDnsServer({
    records: {
      "s1._domainkey.sender.test": { TXT: [`v=DKIM1; k=rsa; p=${rsaPublic}`] },
      "dest.test": { MX: [{ preference: 10, exchange: "mx.dest.test" }] },
      "mx.dest.test": { A: ["127.0.0.1"] },
    },
  });
  sink = await startSinkServer();
});
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
  await sink.close();
  await dns.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function pool(options: Parameters<typeof createComposePool>[0]): ComposePool {
  const p = createComposePool(options);
  pools.push(p);
  return p;
}

let seq = 0;
function job(
  message: Partial<DeliveryJob["message"]> = {},
  dkim: DeliveryJob["dkim"] | undefined = undefined,
): DeliveryJob {
  const messageId = `msg_pool${++seq}`;
  return {
    jobId: `${messageId}.1`,
    messageId,
    tenantId: "t_1",
    attempt: 1,
    recipients: ["alice@dest.test"],
    message: {
      from: { email: "news@sender.test" },
      to: [{ email: "alice@dest.test" }],
      subject: "pooled",
      text: "hello from a worker thread",
      headers: {},
      messageIdHeader: `${messageId}@sender.test`,
      ...message,
    },
    dkim: dkim === undefined ? { domain: "sender.test", selector: "s1", privateKeyPem: rsaPem } : dkim,
  };
}

const verify = (raw: Buffer) => dkimVerify(raw, { resolver: mailauthResolver(dns.server) });
const crashWorker = new URL("./compose-pool.crash-worker.ts", import.meta.url);

describe("compose pool", () => {
  it("builds and signs in worker threads, spread over the pool, and every message verifies", async () => {
    const p = pool({ threads: 2 });
    const jobs = Array.from({ length: 12 }, () => job());
    const results = await Promise.all(jobs.map((j) => p.compose(j)));
    expect(p.stats().threads).toBe(2);
    for (const [i, r] of results.entries()) {
      if (!r.ok) throw new Error(r.error);
      expect(r.raw.toString()).toContain(`Message-ID: <${jobs[i]!.message.messageIdHeader}>`);
      const { results: dkim } = await verify(r.raw);
      expect(dkim.map((d) => d.status.result)).toEqual(["pass"]);
    }
  });

  it("answers a message that cannot be built or signed with its reason, as a value", async () => {
    const p = pool({ threads: 1 });
    const badId = await p.compose(job({ messageIdHeader: "no-at-sign" }));
    expect(badId).toEqual({ ok: false, error: expect.stringMatching(/Message-ID/) });
    const badKey = await p.compose(
      job({}, { domain: "sender.test", selector: "s1", privateKeyPem: "garbage" }),
    );
    expect(badKey).toEqual({ ok: false, error: "DKIM private key cannot be read" });
    // The worker is still there and still works.
    expect((await p.compose(job())).ok).toBe(true);
    expect(p.stats()).toMatchObject({ threads: 1, crashes: 0 });
  });

  it("replaces a worker that exits and retries its request once", async () => {
    const marker = path.join(tmp, "died-once");
    const p = pool({ threads: 1, workerUrl: crashWorker, workerData: { marker } });
    const result = await p.compose(job({ subject: "die once" }));
    expect(result.ok).toBe(true);
    expect(fs.existsSync(marker)).toBe(true);
    expect(p.stats()).toMatchObject({ threads: 1, crashes: 1, running: 0, queued: 0 });
  });

  it("fails a request that kills its worker twice, with the reason; the request beside it survives", async () => {
    const p = pool({ threads: 1, workerUrl: crashWorker, workerData: { marker: path.join(tmp, "unused") } });
    // Both go to the one worker at once; the crash takes the bystander too, but its retry runs
    // apart from the poison message, so only the poison message fails.
    const [poison, bystander] = await Promise.all([
      p.compose(job({ subject: "die always" })),
      p.compose(job({ subject: "innocent" })),
    ]);
    expect(poison).toEqual({
      ok: false,
      error: expect.stringMatching(
        /compose worker died 2 times while building this message \(simulated crash\)/,
      ),
    });
    expect(bystander.ok).toBe(true);
    expect(p.stats().crashes).toBe(2);
  });

  it("ends a worker whose request runs past the timeout; the request fails with the reason after its retry", async () => {
    const p = pool({
      threads: 1,
      requestTimeoutMs: 1_500,
      workerUrl: crashWorker,
      workerData: { marker: path.join(tmp, "unused") },
    });
    const [hung, bystander] = await Promise.all([
      p.compose(job({ subject: "hang" })),
      p.compose(job({ subject: "innocent" })),
    ]);
    expect(hung).toEqual({
      ok: false,
      error:
        "the compose worker died 2 times while building this message (building the message took longer than 1500 ms)",
    });
    expect(bystander.ok).toBe(true);
    expect(p.stats()).toMatchObject({ crashes: 2, running: 0, queued: 0 });
  });

  it("close() lets queued requests finish, then ends every thread; later requests are refused", async () => {
    const p = pool({ threads: 2 });
    const pending = Array.from({ length: 20 }, () => p.compose(job()));
    const closed = p.close();
    const results = await Promise.all(pending);
    await closed;
    expect(results.every((r) => r.ok)).toBe(true);
    expect(p.stats()).toEqual({ threads: 0, running: 0, queued: 0, crashes: 0 });
    expect(await p.compose(job())).toEqual({ ok: false, error: "the compose pool is closed" });
  });

  it("prestart starts every thread before the first request; close() ends them", async () => {
    const p = pool({ threads: 2, prestart: true });
    expect(p.stats().threads).toBe(2);
    await p.close();
    expect(p.stats().threads).toBe(0);
  });

  it("threads = 0 composes on the calling thread, with the same contract", async () => {
    const p = pool({ threads: 0 });
    const ok = await p.compose(job());
    expect(ok.ok).toBe(true);
    expect(await p.compose(job({ messageIdHeader: "<x@y>" }))).toMatchObject({ ok: false });
    expect(p.stats().threads).toBe(0);
  });
});

describe("delivery engine with compose threads", () => {
  it("delivers signed mail composed in a worker, fails an unbuildable message with its reason, and closes its threads", async () => {
    const engine = createDeliveryEngine({
      heloName: "origin.sender.test",
      smtpPort: sink.port,
      dnsServers: [dns.server],
      verpSecret: "verp-secret-for-tests",
      connectTimeoutMs: 2_000,
      maxConnectionsPerHost: 2,
      allowPrivateMx: true,
      composeThreads: 1,
    });
    try {
      const good = job();
      const before = sink.messages.length;
      expect(await engine.deliver(good)).toMatchObject([
        { recipient: "alice@dest.test", status: "delivered" },
      ]);
      const received = sink.messages.slice(before);
      expect(received).toHaveLength(1);
      expect((await verify(received[0]!.raw)).results.map((d) => d.status.result)).toEqual(["pass"]);

      const bad = job({ headers: { "DKIM-Signature": "v=1" } });
      expect(await engine.deliver(bad)).toEqual([
        { recipient: "alice@dest.test", status: "failed", response: expect.stringMatching(/reserved/) },
      ]);
      expect(sink.messages.length).toBe(before + 1);
    } finally {
      await engine.close();
    }
  });
});
