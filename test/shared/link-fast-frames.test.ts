/**
 * shared/link/fast-frames.ts against the schema it stands in for: on every frame of a corpus (the
 * frames an origin sends while delivering, every optional field, unknown keys, and thousands of
 * mutations of them: wrong types, out-of-range numbers, missing fields, nulls, extra keys at each
 * level, `__proto__`), the fast path either returns exactly what OriginFrameSchema parses (deep and
 * strict: the same keys, unknown ones stripped) or null, and it returns null for everything the
 * schema refuses. The frames a hub gets per message take the fast path.
 */
import { describe, expect, it } from "vitest";
import { fastOriginFrame } from "../../shared/link/fast-frames.ts";
import {
  MAX_RESULTS_PER_FRAME,
  OriginFrameSchema,
  parseOriginFrame,
  type RecipientOutcome,
} from "../../shared/link/protocol.ts";

const full: RecipientOutcome = {
  recipient: "a@example.net",
  status: "deferred",
  smtpCode: 451,
  enhancedCode: "4.7.1",
  response: "451 4.7.1 try later",
  bounceType: "soft",
  mxHost: "mx.example.net",
  sourceAddress: "192.0.2.1",
  tls: true,
  tlsVersion: "TLSv1.3",
  mtaSts: { mode: "testing", failure: "certificate name mismatch" },
  latencyMs: 12.5,
  providerMessageId: "SM123",
  gone: true,
  retryAfterMs: 30_000,
};
const delivered: RecipientOutcome = {
  recipient: "b@example.net",
  status: "delivered",
  smtpCode: 250,
  enhancedCode: "2.0.0",
  response: "250 2.0.0 Ok",
  mxHost: "mx.example.net",
  tls: false,
  latencyMs: 3,
};
const result = (i: number, recipients: unknown[] = [delivered]) => ({
  jobId: `msg_${i}.1`,
  messageId: `msg_${i}`,
  attempt: 1,
  recipients,
});

const corpus: unknown[] = [
  { type: "results", results: [result(1), result(2, [full, delivered])] },
  { type: "results", results: Array.from({ length: MAX_RESULTS_PER_FRAME }, (_, i) => result(i)) },
  { type: "results", results: Array.from({ length: MAX_RESULTS_PER_FRAME + 1 }, (_, i) => result(i)) },
  { type: "results", results: [] },
  { type: "result", ...result(3, [full]) },
  { type: "result", ...result(4), extra: 1 },
  { type: "ack", jobIds: ["msg_1.1", "msg_2.1"] },
  { type: "ack", jobIds: [] },
  { type: "ack", jobIds: ["msg_1.1"], stages: { rendered: ["msg_1.1"] } },
  { type: "ack", jobIds: Array.from({ length: 10_001 }, (_, i) => `m${i}.1`) },
  { type: "credit", credits: 1 },
  { type: "credit", credits: 10_000 },
  { type: "credit", credits: 10_001 },
  { type: "credit", credits: 0 },
  { type: "credit", credits: 1.5 },
  { type: "ping" },
  { type: "pong", extra: true },
  { type: "release", jobIds: ["msg_1.1"] },
  { type: "hello", protocol: 6, nodeId: "n", bootId: "b", version: "v", capacity: 1 },
  { type: "nope" },
  null,
  [],
  "results",
  42,
];

/** Replacement values tried at every position of a frame. */
const ODD: unknown[] = [
  null,
  undefined,
  "",
  "x".repeat(2_000),
  0,
  -1,
  1.5,
  2 ** 53,
  1e308 * 10,
  true,
  false,
  [],
  {},
  ["x"],
  { mode: "enforce" },
  "delivered",
  "hard",
];

/** Every frame with one value replaced, one key removed or one unknown key added, at every depth. */
function* mutations(value: unknown): Generator<unknown> {
  if (Array.isArray(value)) {
    // Arrays of many equal items: mutate the first and the last only.
    const at = value.length > 3 ? [0, value.length - 1] : value.map((_, i) => i);
    for (const i of at) {
      for (const m of mutations(value[i])) yield value.map((v, j) => (j === i ? m : v));
      yield value.filter((_, j) => j !== i);
    }
    return;
  }
  if (typeof value !== "object" || value === null) {
    yield* ODD;
    return;
  }
  const obj = value as Record<string, unknown>;
  yield { ...obj, unknownKey: 1 };
  yield JSON.parse(`{"__proto__": {"polluted": true}, ${JSON.stringify(obj).slice(1)}`);
  for (const key of Object.keys(obj)) {
    const { [key]: _gone, ...rest } = obj;
    yield rest;
    for (const m of mutations(obj[key])) yield { ...obj, [key]: m };
  }
}

function check(frame: unknown): "fast" | "schema" | "refused" {
  // Through JSON as on the wire (undefined values drop out, as they would).
  const text = JSON.stringify(frame);
  if (text === undefined) return "refused";
  const data = JSON.parse(text) as unknown;
  const fast = fastOriginFrame(data, MAX_RESULTS_PER_FRAME);
  const schema = OriginFrameSchema.safeParse(JSON.parse(text));
  if (fast !== null) {
    expect(schema.success, `fast path accepted what the schema refuses: ${text.slice(0, 300)}`).toBe(true);
    expect(fast).toStrictEqual(schema.data);
    return "fast";
  }
  return schema.success ? "schema" : "refused";
}

describe("the fast path for origin frames", () => {
  it("returns what the schema returns, or null, on the corpus and every mutation of it", () => {
    const seen = { fast: 0, schema: 0, refused: 0 };
    for (const frame of corpus) {
      seen[check(frame)]++;
      for (const m of mutations(frame)) seen[check(m)]++;
    }
    // The corpus exercises all three outcomes many times.
    expect(seen.fast).toBeGreaterThan(400);
    expect(seen.refused).toBeGreaterThan(2_000);
    expect(seen.schema).toBeGreaterThan(30);
  });

  it("takes the frames a hub gets per message, unknown keys stripped as the schema strips them", () => {
    for (const frame of [
      { type: "results", results: [result(1), result(2, [full, { ...delivered, spare: "x" }])] },
      { type: "result", ...result(3, [full]), spare: 1 },
      { type: "ack", jobIds: ["msg_1.1"] },
      { type: "credit", credits: 7 },
    ]) {
      expect(check(frame)).toBe("fast");
    }
    const parsed = parseOriginFrame(
      JSON.stringify({ type: "results", results: [result(5, [{ ...full, spare: 1 }])] }),
    );
    expect(
      parsed.ok && parsed.frame.type === "results" && "spare" in parsed.frame.results[0]!.recipients[0]!,
    ).toBe(false);
  });

  it("leaves refusals and their messages to the schema", () => {
    const bad = parseOriginFrame(JSON.stringify({ type: "results", results: [result(1, [])] }));
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.error).toContain("recipients");
    expect(parseOriginFrame("{")).toEqual({ ok: false, error: "frame is not JSON" });
  });
});
