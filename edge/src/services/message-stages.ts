/**
 * The middle of the message lifecycle (docs/api/sendgrid.md#message-statuses): `queued` until a hub
 * hands the message to an origin, `processing` from then (the origin renders it and builds its
 * MIME: db/messages.ts marks it at dispatch), `rendered` once the origin has the MIME built and
 * signed, `sending` once SMTP delivery has started, then its outcome. The origin reports the two
 * later stages on the `ack` frames that renew its leases (docs/link-protocol.md#stages), never in a
 * frame of their own: a message whose outcome comes before the next renewal goes from `processing`
 * straight to it. A stage only moves a status forward: it never overwrites an outcome, and a
 * report for a dispatch the origin no longer holds is ignored.
 */
import { splitJobId } from "../../../shared/link/protocol.ts";
import { jsonListStatements } from "../db/messages.ts";

export type Stage = "rendered" | "sending";

/** Which statuses each stage may replace (so it moves forward only, and never past an outcome). */
const STAGE_SQL: Record<Stage, string> = {
  rendered: `UPDATE messages SET status = 'rendered', updated_at = ? WHERE id IN (SELECT value FROM json_each(?))
    AND status = 'processing'`,
  sending: `UPDATE messages SET status = 'sending', updated_at = ? WHERE id IN (SELECT value FROM json_each(?))
    AND status IN ('processing', 'rendered')`,
};

/** At most this many reported stages wait for D1 in a hub; past it newer reports are dropped (they are advisory). */
export const MAX_PENDING_STAGES = 20_000;

/**
 * The stages of an `ack` frame that name a dispatch this origin process holds (leased to that node
 * and boot id, at that dispatch): message id → stage, `sending` winning over `rendered`.
 */
export function heldStages(
  sql: SqlStorage,
  stages: { rendered?: string[]; sending?: string[] },
  nodeId: string,
  bootId: string | null,
): Map<string, Stage> {
  const wanted: [string, number, Stage][] = [];
  for (const stage of ["rendered", "sending"] as const) {
    for (const jobId of stages[stage] ?? []) {
      const { messageId, dispatch } = splitJobId(jobId);
      wanted.push([messageId, dispatch, stage]);
    }
  }
  const out = new Map<string, Stage>();
  if (wanted.length === 0) return out;
  const rows = sql
    .exec<{ id: string; stage: Stage }>(
      `SELECT o.message_id AS id, json_extract(j.value, '$[2]') AS stage
       FROM json_each(?1) j JOIN outbox o ON o.message_id = json_extract(j.value, '$[0]')
       WHERE o.dispatches = json_extract(j.value, '$[1]') AND o.state IN ('leased', 'recording')
         AND o.lease_node = ?2 AND o.lease_boot IS ?3`,
      JSON.stringify(wanted),
      nodeId,
      bootId,
    )
    .toArray();
  for (const r of rows) if (out.get(r.id) !== "sending") out.set(r.id, r.stage);
  return out;
}

/** The D1 statements for a flush's stages: one per stage (ids as one JSON list, db/messages.ts). */
export function stageStatements(
  d1: D1Database,
  stages: readonly (readonly [string, Stage])[],
  now: number,
): D1PreparedStatement[] {
  const out: D1PreparedStatement[] = [];
  for (const stage of ["rendered", "sending"] as const) {
    const ids = stages.filter(([, s]) => s === stage).map(([id]) => id);
    if (ids.length > 0) out.push(...jsonListStatements(d1, STAGE_SQL[stage], [now], ids));
  }
  return out;
}
