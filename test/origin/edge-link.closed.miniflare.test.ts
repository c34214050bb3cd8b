/**
 * A link closed after its hello but before the welcome (a node drained right after it started: a
 * deploy that stops it at once, or test/e2e/edge-restart.e2e.test.ts stopping its origin) acts on no
 * frame that still comes in while the close handshake runs (`ws` delivers frames in CLOSING). It used
 * to act on the welcome: the node then opened its links to the other shards after its drain, and those
 * took jobs that its closed engine failed for good ("the compose pool is closed"). Real parts: the
 * origin's EdgeLink and the Worker in workerd (Miniflare, as edge-link.miniflare.test.ts runs it).
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshSecrets, liveSender, testWorkDir } from "../helpers/miniflare-fixture.ts";
import { startMiniflareEdge, type MiniflareEdge } from "../../scripts/lib/miniflare-edge.ts";
import { EdgeLink } from "../../origin/src/link/edge-link.ts";

const SENDER = "sender.closed-link.test";
const secrets = freshSecrets();

let edge: MiniflareEdge;
let workDir: string;
let apiKey: string;

beforeAll(async () => {
  workDir = testWorkDir("closed-link-miniflare");
  edge = await startMiniflareEdge({
    persistDir: path.join(workDir, "edge"),
    vars: { ...secrets, DEV_MODE: "true", HUB_SHARDS: "2" },
  });
  apiKey = (await liveSender(edge.url, secrets, "Closed link", SENDER)).apiKey;
}, 180_000);

afterAll(async () => {
  await edge?.stop();
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

describe("EdgeLink closed before its welcome", () => {
  it("acts on no frame that arrives during the close: no welcome (so no further shard links), no jobs", async () => {
    // Work waiting on shard 0, so the hub has jobs to push right after its welcome.
    const res = await fetch(new URL("/v3/mail/send", edge.url), {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({
        personalizations: Array.from({ length: 5 }, (_, i) => ({ to: [{ email: `r${i}@example.net` }] })),
        from: { email: `app@${SENDER}` },
        subject: "Closed link",
        content: [{ type: "text/plain", value: "x" }],
      }),
    });
    expect(res.status).toBe(202);

    const welcomes: unknown[] = [];
    const jobs: string[] = [];
    const link: EdgeLink = new EdgeLink({
      edgeUrl: edge.url,
      token: secrets.ORIGIN_TOKEN,
      shard: 0,
      nodeId: `closed-${randomUUID().slice(0, 8)}`,
      bootId: randomUUID(),
      version: "test",
      // Asked for the hello's capacity once the socket is open: close right after the hello is written,
      // before any frame from the hub can be read.
      freeCapacity: () => {
        queueMicrotask(() => link.close());
        return 10;
      },
      onJobs: (js) => jobs.push(...js.map((j) => j.jobId)),
      onWelcome: (w) => welcomes.push(w),
      log: () => {},
    });
    link.start();

    // The hub answers the hello before it answers our close frame, on the same socket: once the close
    // handshake is done (the link drops its socket), every frame the hub sent before it has been read.
    const socketOf = () => (link as unknown as { ws: unknown }).ws;
    const deadline = Date.now() + 15_000;
    while (socketOf() !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(socketOf()).toBeNull();
    expect(welcomes).toEqual([]);
    expect(jobs).toEqual([]);
    expect(link.connected).toBe(false);
  }, 30_000);
});
