/**
 * OriginHub shards: their names, which one a request's messages go to, and which one a message id
 * names (docs/architecture.md, "The accept path"). Pure: no bindings, so every rule here is tested
 * on its own.
 *
 * Layout. There are two kinds of shard, and origins open one link to each (link index order):
 *  - unplaced shards `hub-0` … `hub-{HUB_SHARDS-1}`, created wherever they are first used (the only
 *    kind before regional shards existed; kept so their messages are never stranded);
 *  - regional shards `hub-<region>-<k>` for each region in HUB_REGIONS and k < HUB_SHARDS_PER_REGION,
 *    created with that region as the Durable Object `locationHint`.
 * A live send goes to a regional shard of the request's own region when HUB_REGIONS is set, else to
 * an unplaced shard.
 *
 * Message ids name their shard. A ULID body is 26 Crockford base32 characters, an alphabet without
 * the letter U; ids that name a shard put a U after the 10 time characters, then one character for
 * the region (0 = unplaced, else 1 + its place in LOCATION_HINTS, a fixed list) and one for k:
 * `msg_<time:10>U<region:1><k:1><random:13>`. They still sort by time and match `msg_[0-9A-Z]{26}`.
 * Ids without the U (sandbox messages, messages accepted before regional shards) name no shard.
 * Because the region is coded by the fixed list, not by its place in HUB_REGIONS, reordering or
 * adding regions, or adding shards per region, never re-maps an existing message; removing one
 * strands the messages its shards still hold (docs/configuration.md).
 */
import { ulid } from "../../../shared/ids.ts";

/** Cloudflare's Durable Object location hints (developers.cloudflare.com/durable-objects/reference/data-location/). Append only: ids store the position. */
export const LOCATION_HINTS = ["wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me"] as const;
export type HubRegion = (typeof LOCATION_HINTS)[number];

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** One base32 character per shard index. */
export const MAX_SHARDS_PER_REGION = ALPHABET.length;
const MARK = "U";
const BODY_AT = 4; // after "msg_"

/** One shard: a region (null = unplaced) and its number within it. */
export interface ShardRef {
  region: HubRegion | null;
  index: number;
}

export interface ShardLayout {
  /** HUB_SHARDS: unplaced shards hub-0 … hub-{n-1}. */
  unplaced: number;
  /** HUB_REGIONS, in the order configured. */
  regions: HubRegion[];
  /** HUB_SHARDS_PER_REGION. */
  perRegion: number;
}

export const isHubRegion = (v: string): v is HubRegion => (LOCATION_HINTS as readonly string[]).includes(v);

export function layoutOf(config: {
  HUB_SHARDS: number;
  HUB_REGIONS: HubRegion[];
  HUB_SHARDS_PER_REGION: number;
}): ShardLayout {
  return {
    unplaced: config.HUB_SHARDS,
    regions: config.HUB_REGIONS,
    perRegion: config.HUB_SHARDS_PER_REGION,
  };
}

export const hubName = (s: ShardRef): string => (s.region ? `hub-${s.region}-${s.index}` : `hub-${s.index}`);

export function parseHubName(name: string): ShardRef | null {
  const m = /^hub-(?:([a-z]+)-)?(\d+)$/.exec(name);
  if (!m) return null;
  const region = m[1] ?? null;
  if (region !== null && !isHubRegion(region)) return null;
  return { region, index: Number(m[2]) };
}

/** Every shard of the layout, in link index order (the order of `GET /link?shard=N`). */
export function allShards(layout: ShardLayout): ShardRef[] {
  const out: ShardRef[] = [];
  for (let i = 0; i < layout.unplaced; i++) out.push({ region: null, index: i });
  for (const region of layout.regions) {
    for (let i = 0; i < layout.perRegion; i++) out.push({ region, index: i });
  }
  return out;
}

export function inLayout(layout: ShardLayout, s: ShardRef): boolean {
  return s.region === null
    ? s.index < layout.unplaced
    : layout.regions.includes(s.region) && s.index < layout.perRegion;
}

/** A new live message id naming shard `s` (see the header for the format). */
export function newMessageId(s: ShardRef, now: number = Date.now()): string {
  const body = ulid(now);
  const region = s.region === null ? 0 : LOCATION_HINTS.indexOf(s.region) + 1;
  return `msg_${body.slice(0, 10)}${MARK}${ALPHABET[region]}${ALPHABET[s.index]}${body.slice(13)}`;
}

/** The shard a message id names, or null for an id that names none (sandbox, or accepted before regional shards). */
export function shardFor(messageId: string): ShardRef | null {
  if (messageId.length !== BODY_AT + 26 || messageId[BODY_AT + 10] !== MARK) return null;
  const region = ALPHABET.indexOf(messageId[BODY_AT + 11]!);
  const index = ALPHABET.indexOf(messageId[BODY_AT + 12]!);
  if (region < 0 || region > LOCATION_HINTS.length || index < 0) return null;
  return { region: region === 0 ? null : LOCATION_HINTS[region - 1]!, index };
}

/**
 * Where a message whose id names no shard was enqueued before regional shards: FNV-1a over the id,
 * modulo HUB_SHARDS, among the unplaced shards. Only the sweeper's legacy guard still needs it.
 */
export function legacyShardFor(messageId: string, shards: number): ShardRef {
  let h = 0x811c9dc5;
  for (let i = 0; i < messageId.length; i++) {
    h ^= messageId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return { region: null, index: (h >>> 0) % shards };
}

/** What the Worker reads of `request.cf` (developers.cloudflare.com/workers/runtime-apis/request/#incomingrequestcfproperties). */
export interface RequestPlace {
  continent?: unknown;
  country?: unknown;
  longitude?: unknown;
  colo?: unknown;
}

// Countries Cloudflare's `me` hint serves better than `apac` (ISO 3166-1 alpha-2; cf.continent says "AS").
const MIDDLE_EAST = new Set([
  "AE",
  "BH",
  "IL",
  "IQ",
  "IR",
  "JO",
  "KW",
  "LB",
  "OM",
  "PS",
  "QA",
  "SA",
  "SY",
  "YE",
]);

/** The location hint nearest to where the request entered Cloudflare, or null when `cf` says nothing. */
export function regionOfRequest(cf: RequestPlace | undefined): HubRegion | null {
  if (!cf || typeof cf.continent !== "string") return null;
  const lon = Number(cf.longitude);
  const hasLon =
    typeof cf.longitude === "string" || typeof cf.longitude === "number" ? Number.isFinite(lon) : false;
  switch (cf.continent) {
    case "NA":
      // The Rockies split western from eastern North America well enough for a placement hint.
      return hasLon && lon < -100 ? "wnam" : "enam";
    case "SA":
      return "sam";
    case "EU":
      return hasLon && lon > 20 ? "eeur" : "weur";
    case "AS":
      return typeof cf.country === "string" && MIDDLE_EAST.has(cf.country) ? "me" : "apac";
    case "OC":
    case "AN":
      return "oc";
    case "AF":
      return "afr";
    default:
      return null;
  }
}

/** When a request's own region has no shards, the configured region tried next, nearest first. */
const NEAREST: Record<HubRegion, HubRegion[]> = {
  wnam: ["enam", "sam", "apac", "oc", "weur", "eeur", "me", "afr"],
  enam: ["wnam", "weur", "sam", "eeur", "afr", "me", "apac", "oc"],
  sam: ["enam", "wnam", "weur", "afr", "eeur", "me", "apac", "oc"],
  weur: ["eeur", "enam", "afr", "me", "wnam", "sam", "apac", "oc"],
  eeur: ["weur", "me", "afr", "enam", "apac", "wnam", "sam", "oc"],
  apac: ["oc", "me", "wnam", "eeur", "weur", "enam", "afr", "sam"],
  oc: ["apac", "wnam", "me", "enam", "eeur", "weur", "sam", "afr"],
  afr: ["weur", "me", "eeur", "enam", "sam", "apac", "wnam", "oc"],
  me: ["eeur", "weur", "afr", "apac", "enam", "oc", "wnam", "sam"],
};

/** The configured region a request's sends go to: its own, else the nearest configured one. */
export function regionFor(layout: ShardLayout, cf: RequestPlace | undefined): HubRegion | null {
  if (layout.regions.length === 0) return null;
  const own = regionOfRequest(cf);
  if (own === null) return layout.regions[0]!;
  if (layout.regions.includes(own)) return own;
  return NEAREST[own].find((r) => layout.regions.includes(r)) ?? layout.regions[0]!;
}

/**
 * The shard one request's live messages go to (all of them: acceptance is one transaction).
 * Within the region: by `keyHash` (a 32-bit hash of tenant + Idempotency-Key) so a retry reaches the
 * shard that remembers the key, else at random so load spreads.
 */
export function chooseShard(
  layout: ShardLayout,
  cf: RequestPlace | undefined,
  keyHash: number | null,
  random: () => number = Math.random,
): ShardRef {
  const region = regionFor(layout, cf);
  const count = region === null ? layout.unplaced : layout.perRegion;
  const index = keyHash === null ? Math.floor(random() * count) % count : (keyHash >>> 0) % count;
  return { region, index };
}

/** FNV-1a, 32 bits, over tenant id and Idempotency-Key (separated by a NUL, which neither contains). */
export function idempotencyKeyHash(tenantId: string, key: string): number {
  const text = `${tenantId}\u0000${key}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
