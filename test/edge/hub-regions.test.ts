/**
 * Regional hub shards (edge/src/lib/shards.ts, docs/configuration.md "Hub shards"): the region a
 * request's `cf` data points to, the shard a request goes to, the id → shard mapping, and a send
 * through the Worker with HUB_REGIONS set landing in a shard of the request's region.
 */
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../edge/src/index.ts";
import {
  allShards,
  chooseShard,
  hubName,
  idempotencyKeyHash,
  LOCATION_HINTS,
  newMessageId,
  parseHubName,
  regionFor,
  regionOfRequest,
  shardFor,
  type ShardLayout,
} from "../../edge/src/lib/shards.ts";
import { newId } from "../../shared/ids.ts";
import { BASE, bearer, LinkClient, mailBody, setupTenant } from "./helpers.ts";

const layout: ShardLayout = { unplaced: 1, regions: ["weur", "enam", "apac"], perRegion: 2 };

describe("region of a request from its cf data", () => {
  it.each([
    [{ continent: "EU", longitude: "2.35", country: "FR", colo: "CDG" }, "weur"],
    [{ continent: "EU", longitude: "37.6", country: "RU", colo: "DME" }, "eeur"],
    [{ continent: "NA", longitude: "-122.4", country: "US", colo: "SFO" }, "wnam"],
    [{ continent: "NA", longitude: "-74.0", country: "US", colo: "EWR" }, "enam"],
    [{ continent: "SA", longitude: "-46.6", country: "BR", colo: "GRU" }, "sam"],
    [{ continent: "AS", longitude: "139.7", country: "JP", colo: "NRT" }, "apac"],
    [{ continent: "AS", longitude: "55.3", country: "AE", colo: "DXB" }, "me"],
    [{ continent: "OC", longitude: "151.2", country: "AU", colo: "SYD" }, "oc"],
    [{ continent: "AF", longitude: "28.0", country: "ZA", colo: "JNB" }, "afr"],
  ] as const)("%o → %s", (cf, region) => {
    expect(regionOfRequest(cf)).toBe(region);
  });

  it("no cf data (local development, tests) → no region", () => {
    expect(regionOfRequest(undefined)).toBeNull();
    expect(regionOfRequest({})).toBeNull();
  });

  it("a region without shards goes to the nearest configured one, and no cf data to the first", () => {
    expect(regionFor(layout, { continent: "EU", longitude: "30" })).toBe("weur"); // eeur → weur
    expect(regionFor(layout, { continent: "NA", longitude: "-120" })).toBe("enam"); // wnam → enam
    expect(regionFor(layout, { continent: "OC" })).toBe("apac");
    expect(regionFor(layout, undefined)).toBe("weur");
    expect(regionFor({ unplaced: 2, regions: [], perRegion: 1 }, { continent: "EU" })).toBeNull();
  });
});

describe("shard of a request", () => {
  it("is in the request's region; a key always picks the same shard there, without one requests spread", () => {
    const cf = { continent: "AS", longitude: "139.7", country: "JP" };
    const keyed = idempotencyKeyHash("tnt_a", "order-42");
    const picks = new Set<number>();
    for (let i = 0; i < 20; i++) {
      expect(chooseShard(layout, cf, keyed)).toEqual(chooseShard(layout, cf, keyed));
      const s = chooseShard(layout, cf, null, () => i / 20);
      expect(s.region).toBe("apac");
      picks.add(s.index);
    }
    expect([...picks].sort()).toEqual([0, 1]);
    expect(chooseShard(layout, cf, keyed).region).toBe("apac");
    // Without regions: the unplaced shards.
    expect(chooseShard({ unplaced: 3, regions: [], perRegion: 1 }, cf, null, () => 0.99)).toEqual({
      region: null,
      index: 2,
    });
  });
});

describe("message id → shard", () => {
  it("every shard of every region round-trips through the id, which still looks like msg_ + 26 base32", () => {
    for (const region of [null, ...LOCATION_HINTS]) {
      for (const index of [0, 1, 17, 31]) {
        const id = newMessageId({ region, index });
        expect(id).toMatch(/^msg_[0-9A-Z]{26}$/);
        expect(shardFor(id)).toEqual({ region, index });
      }
    }
  });

  it("ids keep sorting by time", () => {
    const a = newMessageId({ region: "me", index: 31 }, 1_700_000_000_000);
    const b = newMessageId({ region: null, index: 0 }, 1_700_000_000_001);
    expect(a < b).toBe(true);
  });

  it("sandbox ids and ids from before regional shards name no shard", () => {
    for (let i = 0; i < 200; i++) expect(shardFor(newId("msg"))).toBeNull();
    expect(shardFor("msg_nope")).toBeNull();
  });

  it("names and link order: unplaced shards first (hub-N as before), then each region's", () => {
    expect(allShards(layout).map(hubName)).toEqual([
      "hub-0",
      "hub-weur-0",
      "hub-weur-1",
      "hub-enam-0",
      "hub-enam-1",
      "hub-apac-0",
      "hub-apac-1",
    ]);
    for (const s of allShards(layout)) expect(parseHubName(hubName(s))).toEqual(s);
    expect(parseHubName("hub-mars-0")).toBeNull();
  });
});

describe("HUB_REGIONS = weur,apac and 2 shards per region, through the Worker", () => {
  const regionalEnv = { ...env, HUB_REGIONS: "weur,apac", HUB_SHARDS_PER_REGION: "2" };

  async function request(path: string, init: RequestInit & { cf?: Record<string, unknown> } = {}) {
    const ctx = createExecutionContext();
    const res = await worker.fetch!(new Request(`${BASE}${path}`, init) as never, regionalEnv, ctx);
    await waitOnExecutionContext(ctx);
    return res as unknown as Response;
  }

  it("a send from Tokyo lands in an apac shard named by its id; origins link to every shard", async () => {
    const t = await setupTenant();
    const res = await request("/v3/mail/send", {
      method: "POST",
      headers: bearer(t.liveKey),
      body: JSON.stringify(mailBody(t.from)),
      cf: { continent: "AS", country: "JP", longitude: "139.69", colo: "NRT" },
    });
    expect(res.status, await res.clone().text()).toBe(202);
    const { message_id: id } = (await res.json()) as { message_id: string };
    const shard = shardFor(id)!;
    expect(shard.region).toBe("apac");
    expect(shard.index).toBeLessThan(2);
    const held = await runInDurableObject(
      env.ORIGIN_HUB.getByName(hubName(shard)),
      (_i, state) =>
        state.storage.sql.exec("SELECT message_id FROM outbox WHERE message_id = ?", id).toArray().length,
    );
    expect(held).toBe(1);

    // Link index N reaches the Nth shard of the layout: unplaced first, then each region's.
    // (The hub objects themselves run with wrangler.toml's vars here, so their welcome lists only
    // hub-0; the welcome's list is checked in origin-hub.test.ts.)
    const names = ["hub-0", "hub-weur-0", "hub-weur-1", "hub-apac-0", "hub-apac-1"];
    const n = names.indexOf(hubName(shard));
    const up = await request(`/link?shard=${n}`, {
      headers: { Upgrade: "websocket", Authorization: `Bearer ${env.ORIGIN_TOKEN}` },
    });
    expect(up.status).toBe(101);
    up.webSocket!.accept();
    const link = new LinkClient(up.webSocket!);
    await link.hello(10);
    const [job] = await link.jobs(1);
    expect(job!.messageId).toBe(id);
    link.close();
    expect(
      (
        await request(`/link?shard=5`, {
          headers: { Upgrade: "websocket", Authorization: `Bearer ${env.ORIGIN_TOKEN}` },
        })
      ).status,
    ).toBe(400);
  });
});
