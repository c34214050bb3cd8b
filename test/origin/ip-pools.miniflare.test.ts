/**
 * IP pools end to end: the Worker in workerd (Miniflare, scripts/lib/miniflare-edge.ts) and a real
 * origin node (startOriginNode) with IP_POOLS, delivering to an SMTP server on loopback that records
 * each client's address. Before the node has said hello no pool is known and `ip_pool_name` is a 400;
 * once it has, each pool's mail arrives from that pool's address (Linux routes 127/8 to lo), and
 * GET /v3/messages/{id} shows the address in the delivered event.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { loadOriginConfig } from "../../origin/src/config.ts";
import { startOriginNode, type OriginNode } from "../../origin/src/node.ts";
import { createLogger } from "../../origin/src/ops/log.ts";
import { freshSecrets, liveSender, testWorkDir } from "../helpers/miniflare-fixture.ts";
import { startSinkServer, type TestSmtpServer } from "../helpers/smtp-servers.ts";

const SENDER = "sender.pools.test";
const secrets = freshSecrets();

let edge: MiniflareEdge;
let sink: TestSmtpServer;
let node: OriginNode | undefined;
let other: OriginNode | undefined;
let workDir: string;
let apiKey: string;

beforeAll(async () => {
  workDir = testWorkDir("ip-pools-miniflare");
  edge = await startMiniflareEdge({
    persistDir: path.join(workDir, "edge"),
    vars: { ...secrets, DEV_MODE: "true" },
  });
  apiKey = (await liveSender(edge.url, secrets, "Pools", SENDER)).apiKey;
  sink = await startSinkServer();
}, 180_000);

afterAll(async () => {
  await node?.drain();
  await other?.drain();
  await sink?.close();
  await edge?.stop();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

async function api(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(new URL(pathname, edge.url), {
    method,
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const send = (subject: string, ipPool?: string) =>
  api("POST", "/v3/mail/send", {
    personalizations: [{ to: [{ email: "rcpt@example.net" }] }],
    from: { email: `app@${SENDER}` },
    subject,
    content: [{ type: "text/plain", value: "Hello" }],
    ...(ipPool ? { ip_pool_name: ipPool } : {}),
  });

/** Waits until the message is delivered; returns the address the sink saw it from and its events. */
async function delivered(id: string, subject: string): Promise<{ from: string; events: any[] }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = sink.messages.find((x) => x.raw.toString("utf8").includes(`Subject: ${subject}`));
    const view = await api("GET", `/v3/messages/${id}`);
    if (m && view.body?.status === "delivered") return { from: m.remoteAddress, events: view.body.events };
    if (Date.now() > deadline) throw new Error(`message ${id} not delivered: ${JSON.stringify(view.body)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("IP pools through the edge (Miniflare)", () => {
  it("unknown until an origin announces it, then delivered from the pool's address", async () => {
    const early = await send("too early", "transactional");
    expect(early.status).toBe(400);
    expect(early.body.errors[0]).toMatchObject({
      field: "ip_pool_name",
      message: "The IP Pool name must be a valid pool name for your account. You provided [transactional].",
    });

    node = await startOriginNode(
      loadOriginConfig({
        EDGE_URL: edge.url,
        ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
        VERP_SECRET: randomBytes(24).toString("hex"),
        NODE_ID: "pools-node",
        SMARTHOST: `127.0.0.1:${sink.port}`,
        IP_POOLS: "transactional=127.0.0.2;marketing=127.0.0.3",
        IP_POOL_HELO_NAMES: "127.0.0.3=mta-marketing.pools.test",
        HTTP_PORT: "0",
        COMPOSE_THREADS: "0",
        JOURNAL_DIR: path.join(workDir, "journal"),
      }),
      createLogger("error"),
    );
    // The hello is what teaches the hub the pools: wait for the link.
    const up = Date.now() + 20_000;
    while (!node.links.every((l) => l.connected) && Date.now() < up)
      await new Promise((r) => setTimeout(r, 50));
    expect(node.links.every((l) => l.connected)).toBe(true);

    const t = await send("transactional one", "transactional");
    expect(t.status, JSON.stringify(t.body)).toBe(202);
    const m = await send("marketing one", "marketing");
    expect(m.status, JSON.stringify(m.body)).toBe(202);
    const plain = await send("no pool");
    expect(plain.status).toBe(202);

    const tx = await delivered(t.body.message_id, "transactional one");
    expect(tx.from).toBe("127.0.0.2");
    expect(tx.events.find((e) => e.event_type === "delivered").metadata).toMatchObject({
      source_ip: "127.0.0.2",
    });
    const mk = await delivered(m.body.message_id, "marketing one");
    expect(mk.from).toBe("127.0.0.3");
    expect(sink.messages.find((x) => x.remoteAddress === "127.0.0.3")!.clientHostname).toBe(
      "mta-marketing.pools.test",
    );
    const none = await delivered(plain.body.message_id, "no pool");
    expect(none.from).toBe("127.0.0.1");
    expect(none.events.find((e) => e.event_type === "delivered").metadata).not.toHaveProperty("source_ip");

    const unknown = await send("unknown pool", "bulk");
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors[0].field).toBe("ip_pool_name");
  }, 90_000);

  it("a second node without pools, with more room, is never given a pool's mail", async () => {
    other = await startOriginNode(
      loadOriginConfig({
        EDGE_URL: edge.url,
        ORIGIN_TOKEN: secrets.ORIGIN_TOKEN,
        VERP_SECRET: randomBytes(24).toString("hex"),
        NODE_ID: "plain-node",
        SMARTHOST: `127.0.0.1:${sink.port}`,
        // More credit than pools-node: without routing by pool the hub would pick this node first.
        CAPACITY: "400",
        HTTP_PORT: "0",
        COMPOSE_THREADS: "0",
        JOURNAL_DIR: path.join(workDir, "journal-plain"),
      }),
      createLogger("error"),
    );
    const up = Date.now() + 20_000;
    while (!other.links.every((l) => l.connected) && Date.now() < up)
      await new Promise((r) => setTimeout(r, 50));
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await send(`marketing batch ${i}`, "marketing");
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      ids.push(res.body.message_id);
    }
    for (const [i, id] of ids.entries())
      expect((await delivered(id, `marketing batch ${i}`)).from).toBe("127.0.0.3");
    const metrics = await (await fetch(`http://127.0.0.1:${other.httpPort}/metrics`)).text();
    expect(metrics).not.toMatch(/^scaisend_origin_ip_pool_missing_jobs_total\{/m);
  }, 90_000);
});
