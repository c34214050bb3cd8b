/**
 * Factories for edge tests. Tenants, keys and domains are created through the real admin routes
 * (operator token), exactly as the CLI bootstraps a deployment; only "the domain's DNS checks passed"
 * is written to D1 directly, because tests run with DEV_MODE "false" and have no DNS to publish to.
 * Every test makes its own tenant, so tests never depend on each other's rows.
 */
import { runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import {
  LINK_PROTOCOL_VERSION,
  parseEdgeFrame,
  type DeliveryJob,
  type EdgeFrame,
  type OriginFrame,
} from "../../shared/link/protocol.ts";
import type { Permission } from "../../shared/permissions.ts";
import { loadConfig, type Bindings } from "../../edge/src/env.ts";
import { allShards, hubName, layoutOf } from "../../edge/src/lib/shards.ts";

export const BASE = "https://edge.test";

let counter = 0;
/** Unique-enough suffix for names within one test run. */
export function uid(): string {
  counter += 1;
  return `${Date.now().toString(36)}${counter.toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

export function operatorHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { Authorization: `Bearer ${env.ADMIN_TOKEN}`, "Content-Type": "application/json", ...extra };
}

export function bearer(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...extra };
}

export function call(path: string, init: RequestInit = {}): Promise<Response> {
  return SELF.fetch(`${BASE}${path}`, init);
}

export async function createTenant(name = `tenant-${uid()}`): Promise<string> {
  const res = await call("/api/admin/tenants", {
    method: "POST",
    headers: operatorHeaders(),
    body: JSON.stringify({ name }),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { data: { id: string } };
  return body.data.id;
}

export interface KeyOptions {
  environment?: "live" | "test";
  scopes?: Permission[];
  expiresAt?: string;
}

export async function createApiKey(
  tenantId: string,
  opts: KeyOptions = {},
): Promise<{ id: string; key: string }> {
  const res = await call(`/api/admin/tenants/${tenantId}/api_keys`, {
    method: "POST",
    headers: operatorHeaders(),
    body: JSON.stringify({
      name: `key-${uid()}`,
      environment: opts.environment ?? "live",
      scopes: opts.scopes ?? ["mail.send", "domains.read", "domains.write"],
      ...(opts.expiresAt ? { expires_at: opts.expiresAt } : {}),
    }),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { data: { id: string; api_key: string } };
  return { id: body.data.id, key: body.data.api_key };
}

export interface DomainView {
  id: string;
  tenant_id: string;
  domain: string;
  verified: boolean;
  is_active: boolean;
  dkim_selector: string;
  dmarc_policy: string;
  dmarc_rua_email: string | null;
  dns_records: { purpose: string; type: string; host: string; value: string }[];
  last_checked_at: string | null;
  verified_at: string | null;
  errors: unknown[];
  created_at: string;
}

/** Adds a sender domain with the operator token (naming the tenant). Unverified, as in production. */
export async function createDomain(tenantId: string, domain: string): Promise<DomainView> {
  const res = await call("/api/admin/domains", {
    method: "POST",
    headers: operatorHeaders(),
    body: JSON.stringify({ domain, tenant_id: tenantId }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { data: DomainView }).data;
}

/** Stands in for a successful POST /api/admin/domains/{id}/verify (its DNS checks passed). */
export async function markDomainVerified(domainId: string): Promise<void> {
  const result = await env.DB.prepare("UPDATE sender_domains SET verified = 1, verified_at = ? WHERE id = ?")
    .bind(Date.now(), domainId)
    .run();
  expect(result.meta.changes).toBe(1);
}

export interface TenantFixture {
  tenantId: string;
  liveKey: string;
  liveKeyId: string;
  testKey: string;
  testKeyId: string;
  /** A verified sender domain of this tenant. */
  domain: string;
  domainId: string;
  /** An address on the verified domain. */
  from: string;
}

/** A tenant with a live key, a test key (both with mail.send) and one verified sender domain. */
export async function setupTenant(): Promise<TenantFixture> {
  const tenantId = await createTenant();
  const live = await createApiKey(tenantId, { environment: "live" });
  const test = await createApiKey(tenantId, { environment: "test" });
  const domain = `mail-${uid()}.example.com`;
  const d = await createDomain(tenantId, domain);
  await markDomainVerified(d.id);
  return {
    tenantId,
    liveKey: live.key,
    liveKeyId: live.id,
    testKey: test.key,
    testKeyId: test.id,
    domain,
    domainId: d.id,
    from: `sender@${domain}`,
  };
}

/** A valid SendGrid v3 body; `extra` is merged at the top level. */
export function mailBody(from: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    personalizations: [{ to: [{ email: "rcpt@example.net", name: "Recipient" }] }],
    from: { email: from },
    subject: "Hello",
    content: [{ type: "text/plain", value: "Hello there" }],
    ...extra,
  };
}

export function sendMail(
  key: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return call("/v3/mail/send", {
    method: "POST",
    headers: bearer(key, headers),
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Sends and expects a 202 with one message; returns its id. */
export async function sendOne(key: string, body: unknown): Promise<string> {
  const res = await sendMail(key, body);
  const text = await res.text();
  expect(res.status, text).toBe(202);
  const parsed = JSON.parse(text) as { message_id: string };
  expect(parsed.message_id).toMatch(/^msg_[0-9A-Z]{26}$/);
  return parsed.message_id;
}

export interface MessageEventView {
  event_id: string;
  event_type: string;
  timestamp: number;
  recipient_email: string;
  metadata: Record<string, unknown>;
}

export interface MessageDetail {
  id: string;
  status: string;
  mode: string;
  from_email: string;
  from_name: string | null;
  subject: string;
  to_emails: string[];
  categories: string[];
  dispatches: number;
  deferrals: number;
  error_message: string | null;
  created_at: string;
  delivered_at: string | null;
  events: MessageEventView[];
  [key: string]: unknown;
}

export async function getMessage(key: string, id: string): Promise<MessageDetail> {
  const res = await call(`/v3/messages/${id}`, { headers: bearer(key) });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return JSON.parse(text) as MessageDetail;
}

/** Polls until `check` passes (D1 writes done by the hub land asynchronously to the test). */
export async function eventually<T>(
  fn: () => Promise<T>,
  check: (v: T) => boolean,
  timeoutMs = 3000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await fn();
  while (!check(last)) {
    if (Date.now() > deadline) return last;
    await new Promise((r) => setTimeout(r, 20));
    last = await fn();
  }
  return last;
}

/**
 * Runs the object's scheduled alarm now, as `runDurableObjectAlarm` does, but waits out an alarm the
 * object fired by itself: while its own alarm handler runs, `getAlarm()` reads null and
 * `runDurableObjectAlarm` answers false, although the handler re-arms on its way out.
 * True once a scheduled alarm ran; false if none was scheduled for the whole `timeoutMs`. The wait is
 * long because on a loaded machine one of the hub's own alarm runs (a catalog flush, tracking hits,
 * a hand-off) can take seconds, and a shorter wait failed CI once (hub-queue-age, 3 s).
 */
export async function runScheduledAlarm(stub: DurableObjectStub, timeoutMs = 15_000): Promise<boolean> {
  return eventually(
    () => runDurableObjectAlarm(stub),
    (ran) => ran,
    timeoutMs,
  );
}

// ---------------------------------------------------------------- origin link (WebSocket) helpers

type EdgeFrameOf<T extends EdgeFrame["type"]> = Extract<EdgeFrame, { type: T }>;

/**
 * The origin's side of one /link WebSocket, as a test drives it: frames the edge sends are queued,
 * and `next(type)` takes the oldest one of that type (waiting for it, with a timeout).
 */
export class LinkClient {
  private readonly queue: EdgeFrame[] = [];
  /** Frames this client has sent (the hub counts the ones it has handled: stats().links[].framesIn). */
  sent = 0;
  nodeId: string | null = null;
  bootId: string | null = null;
  /** UTF-8 size of every jobs frame received, in order. */
  readonly jobsFrameBytes: number[] = [];
  private readonly waiters: { type: EdgeFrame["type"]; resolve: (f: EdgeFrame) => void }[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(private readonly ws: WebSocket) {
    ws.addEventListener("message", (event) => {
      const text = event.data as string;
      const parsed = parseEdgeFrame(text);
      if (!parsed.ok) throw new Error(`edge sent an invalid frame: ${parsed.error}`);
      const frame = parsed.frame;
      if (frame.type === "jobs") this.jobsFrameBytes.push(new TextEncoder().encode(text).byteLength);
      const i = this.waiters.findIndex((w) => w.type === frame.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(frame);
      else this.queue.push(frame);
    });
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", (event) => resolve({ code: event.code, reason: event.reason }));
    });
  }

  send(frame: OriginFrame): void {
    this.ws.send(JSON.stringify(frame));
    this.sent++;
  }

  /** Sends hello and waits for the welcome. The same nodeId + bootId is one origin process reconnecting. */
  async hello(
    capacity: number,
    nodeId = `node-${uid()}`,
    bootId = `boot-${uid()}`,
  ): Promise<EdgeFrameOf<"welcome">> {
    this.nodeId = nodeId;
    this.bootId = bootId;
    this.send({ type: "hello", protocol: LINK_PROTOCOL_VERSION, nodeId, bootId, version: "test", capacity });
    return this.next("welcome");
  }

  next<T extends EdgeFrame["type"]>(type: T, timeoutMs = 2000): Promise<EdgeFrameOf<T>> {
    const i = this.queue.findIndex((f) => f.type === type);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0] as EdgeFrameOf<T>);
    return new Promise((resolve, reject) => {
      const waiter = { type, resolve: resolve as (f: EdgeFrame) => void };
      this.waiters.push(waiter);
      setTimeout(() => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) {
          this.waiters.splice(at, 1);
          reject(new Error(`no ${type} frame within ${timeoutMs} ms`));
        }
      }, timeoutMs);
    });
  }

  /** Collects jobs frames until `count` jobs have arrived. */
  async jobs(count: number, timeoutMs = 2000): Promise<DeliveryJob[]> {
    const out: DeliveryJob[] = [];
    while (out.length < count) out.push(...(await this.next("jobs", timeoutMs)).jobs);
    return out;
  }

  /** Resolves true if no frame of `type` is queued after `ms` (prefer a hub-side signal: waitForFrames). */
  async nothing(type: EdgeFrame["type"], ms = 300): Promise<boolean> {
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    return !this.queue.some((f) => f.type === type);
  }

  /** Frames of `type` received and not yet taken with next(). */
  queued(type: EdgeFrame["type"]): number {
    return this.queue.filter((f) => f.type === type).length;
  }

  close(code = 1000, reason = "test done"): void {
    try {
      this.ws.close(code, reason);
    } catch {
      // already closed
    }
  }
}

/**
 * This client's link as the hub sees it, once the hub has fully handled every frame the client sent
 * (a deterministic signal: whatever the hub does in answer to those frames is done by then).
 */
export async function linkSettled(
  link: LinkClient,
  shard = 0,
): Promise<Awaited<ReturnType<ReturnType<typeof hubStub>["stats"]>>["links"][number]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const mine = (await hubStub(shard).stats()).links.filter(
      (l) => l.nodeId === link.nodeId && l.bootId === link.bootId,
    );
    const settled = mine.find((l) => l.framesIn >= link.sent);
    if (settled) return settled;
    if (Date.now() > deadline) throw new Error(`hub never handled the ${link.sent} frames of ${link.nodeId}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const hubStub = (shard: number) => env.ORIGIN_HUB.getByName(`hub-${shard}`);

/** Opens an origin link to hub shard 0 (not yet hello'd). */
export async function openLink(token: string = env.ORIGIN_TOKEN): Promise<LinkClient> {
  const res = await call("/link?shard=0", {
    headers: { Upgrade: "websocket", Authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(101);
  const ws = res.webSocket;
  if (!ws) throw new Error("no WebSocket in the 101 response");
  ws.accept();
  return new LinkClient(ws);
}

/**
 * A tenant's messages wherever a 202 can have put them: the D1 catalog, and the outbox of every hub
 * shard the test configuration has (a live message sits only in its shard until the catalog flush).
 * Refused sends must leave this unchanged.
 */
export async function storedMessageCount(tenantId: string): Promise<number> {
  const loaded = loadConfig(env as unknown as Bindings);
  if (!loaded.ok) throw new Error(`test configuration is invalid: ${loaded.problems.join("; ")}`);
  // A catalog flush may land between two reads, so count distinct ids, and read the hubs FIRST: a row
  // leaves a hub's outbox only after it is in D1 (the hub's invariants), so every message is in the
  // hub read, or already in D1 when D1 is read after it.
  const ids = new Set<string>();
  for (const shard of allShards(layoutOf(loaded.config))) {
    const inHub = await runInDurableObject(env.ORIGIN_HUB.getByName(hubName(shard)), (_instance, state) =>
      state.storage.sql
        .exec<{ id: string }>("SELECT message_id AS id FROM outbox WHERE tenant_id = ?", tenantId)
        .toArray()
        .map((r) => r.id),
    );
    for (const id of inHub) ids.add(id);
  }
  const inD1 = await env.DB.prepare("SELECT id FROM messages WHERE tenant_id = ?")
    .bind(tenantId)
    .all<{ id: string }>();
  for (const row of inD1.results) ids.add(row.id);
  return ids.size;
}

/**
 * Empties hub-0 for the next test (Durable Object storage is per test file, shared by its tests):
 * links closed — their attachment cleared first, so the hub never counts a socket it is closing as
 * a link that could take jobs —, outbox and catalog rows deleted, alarm cleared.
 */
export async function resetHub(name = "hub-0"): Promise<void> {
  await runInDurableObject(env.ORIGIN_HUB.getByName(name), async (_instance, state) => {
    for (const ws of state.getWebSockets()) {
      ws.serializeAttachment(null);
      try {
        ws.close(1000, "test reset");
      } catch {
        // already closed
      }
    }
    state.storage.sql.exec("DELETE FROM outbox");
    state.storage.sql.exec("DELETE FROM catalog");
    state.storage.sql.exec("DELETE FROM outbox_entry");
    await state.storage.deleteAlarm();
  });
}

/** Where `breakD1` puts the events table (D1 storage is per test file, so one name serves all). */
export const EVENTS_HELD = "events_held_by_test";
let eventsHeld = false;

/**
 * A real D1 failure for the hub's catalog and result writes: the events table is renamed away, so
 * every batch that inserts an event fails as it would in an outage. `restoreD1` undoes it (safe to
 * call when nothing is broken, e.g. in afterEach).
 */
export async function breakD1(): Promise<void> {
  await env.DB.prepare(`ALTER TABLE events RENAME TO ${EVENTS_HELD}`).run();
  eventsHeld = true;
}

export async function restoreD1(): Promise<void> {
  if (!eventsHeld) return;
  await env.DB.prepare(`ALTER TABLE ${EVENTS_HELD} RENAME TO events`).run();
  eventsHeld = false;
}
