/**
 * A fast path for the origin → edge frames a hub handles per message (`results`, `result`, `ack`,
 * `credit`, `ping`, `pong`): checked field by field with plain code instead of OriginFrameSchema's zod
 * walk, which was 10 % of a hub's busy time while delivering (docs/performance.md, 2026-12-03). zod
 * cannot compile its checks where code generation is not allowed (Workers), so every frame took
 * its generic path.
 *
 * The contract, checked by test/shared/link-fast-frames.test.ts against the schema on valid and
 * mutated frames: when this returns a frame, it is exactly what `OriginFrameSchema.parse` returns
 * for the same input (unknown keys stripped, as zod's objects do); when anything is unusual it
 * returns null and the caller asks zod, which gives the answer and the error message. So it may
 * be stricter than the schema, never laxer. Any change to the schemas of these frames in
 * protocol.ts must be made here too (the test fails otherwise).
 */
import type { OriginFrame, RecipientOutcome } from "./protocol.ts";

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === "string";
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);
const strMax = (v: unknown, max: number) => typeof v === "string" && v.length <= max;

const STATUSES = new Set(["delivered", "deferred", "bounced", "failed"]);
const BOUNCE_TYPES = new Set(["hard", "soft", "block"]);
const MTA_STS_MODES = new Set(["enforce", "testing"]);
const MAX_RETRY_AFTER_MS = 31 * 86_400_000;

/** RecipientOutcomeSchema's optional fields and their checks (protocol.ts); a Map, so `__proto__` is just a key. */
const OPTIONAL_OUTCOME = new Map<string, (v: unknown) => boolean>([
  ["smtpCode", isInt],
  ["enhancedCode", isStr],
  ["bounceType", (v) => isStr(v) && BOUNCE_TYPES.has(v)],
  ["mxHost", isStr],
  ["sourceAddress", (v) => strMax(v, 64)],
  ["tls", (v) => typeof v === "boolean"],
  ["tlsVersion", (v) => strMax(v, 32)],
  ["latencyMs", (v) => typeof v === "number" && Number.isFinite(v)],
  ["providerMessageId", (v) => strMax(v, 256)],
  ["gone", (v) => v === true],
  ["retryAfterMs", (v) => isInt(v) && v >= 0 && v <= MAX_RETRY_AFTER_MS],
]);

function outcome(o: unknown): RecipientOutcome | null {
  if (!isObj(o) || !isStr(o.recipient) || !isStr(o.status) || !STATUSES.has(o.status) || !isStr(o.response))
    return null;
  const out: Obj = { recipient: o.recipient, status: o.status, response: o.response };
  for (const key of Object.keys(o)) {
    if (key === "recipient" || key === "status" || key === "response") continue;
    const v = o[key];
    if (key === "mtaSts") {
      if (v === undefined) continue;
      if (!isObj(v) || !isStr(v.mode) || !MTA_STS_MODES.has(v.mode)) return null;
      const m: Obj = { mode: v.mode };
      if (v.failure !== undefined) {
        if (!strMax(v.failure, 1_000)) return null;
        m.failure = v.failure;
      }
      out.mtaSts = m;
      continue;
    }
    const check = OPTIONAL_OUTCOME.get(key);
    // An unknown key is stripped, as zod strips it; an optional one may be absent (undefined).
    if (!check || v === undefined) continue;
    if (!check(v)) return null;
    out[key] = v;
  }
  return out as RecipientOutcome;
}

function result(r: unknown): Obj | null {
  if (!isObj(r) || !isStr(r.jobId) || !isStr(r.messageId) || !isInt(r.attempt) || r.attempt < 1) return null;
  if (!Array.isArray(r.recipients) || r.recipients.length < 1) return null;
  const recipients: RecipientOutcome[] = new Array(r.recipients.length);
  for (let i = 0; i < r.recipients.length; i++) {
    const o = outcome(r.recipients[i]);
    if (!o) return null;
    recipients[i] = o;
  }
  return { jobId: r.jobId, messageId: r.messageId, attempt: r.attempt, recipients };
}

function stringList(v: unknown, max: number): v is string[] {
  if (!Array.isArray(v) || v.length > max) return false;
  for (const s of v) if (typeof s !== "string") return false;
  return true;
}

/** The frame as OriginFrameSchema would parse it, or null: then ask the schema (module comment). */
export function fastOriginFrame(data: unknown, maxResultsPerFrame: number): OriginFrame | null {
  if (!isObj(data)) return null;
  switch (data.type) {
    case "results": {
      const list = data.results;
      if (!Array.isArray(list) || list.length < 1 || list.length > maxResultsPerFrame) return null;
      const results: Obj[] = new Array(list.length);
      for (let i = 0; i < list.length; i++) {
        const r = result(list[i]);
        if (!r) return null;
        results[i] = r;
      }
      return { type: "results", results } as OriginFrame;
    }
    case "result": {
      const r = result(data);
      return r ? ({ type: "result", ...r } as OriginFrame) : null;
    }
    case "ack": {
      // Renewals with stages are rarer: the schema takes them.
      if (data.stages !== undefined || !stringList(data.jobIds, 10_000)) return null;
      return { type: "ack", jobIds: data.jobIds };
    }
    case "credit": {
      const c = data.credits;
      return isInt(c) && c >= 1 && c <= 10_000 ? { type: "credit", credits: c } : null;
    }
    case "ping":
      return { type: "ping" };
    case "pong":
      return { type: "pong" };
    default:
      return null;
  }
}
