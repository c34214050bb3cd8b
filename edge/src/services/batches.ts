/**
 * Batches and scheduled-send states (docs/api/sendgrid.md#scheduling-and-batches): D1 keeps the
 * batch and its state (the API's answers), and every hub shard is told the state, because any shard
 * may hold messages of the batch and a message accepted later must meet it there
 * (services/batch-holds.ts). D1 is written first: a shard that could not be told leaves the request
 * answered 503, and repeating it (PATCH or DELETE with the same state) tells every shard again.
 */
import { AppError } from "../../../shared/errors.ts";
import type { Db } from "../db/client.ts";
import { tenantBatches } from "../db/batches.ts";
import type { ScheduledSendStatus } from "../db/schema.ts";
import type { Bindings, Config } from "../env.ts";
import { allShards, layoutOf } from "../lib/shards.ts";
import { hubStub } from "./hub-client.ts";

const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
export const BATCH_ID_LENGTH = 32;

/** 32 characters of [A-Za-z0-9] (SendGrid's shape), uniformly random: 190 bits, unguessable. */
export function newBatchId(): string {
  let out = "";
  while (out.length < BATCH_ID_LENGTH) {
    for (const b of crypto.getRandomValues(new Uint8Array(48))) {
      // 248 = 4 × 62: bytes above it would favour the first letters.
      if (b < 248 && out.length < BATCH_ID_LENGTH) out += ID_ALPHABET[b % 62];
    }
  }
  return out;
}

export async function createBatch(db: Db, tenantId: string, now: number): Promise<string> {
  const id = newBatchId();
  await tenantBatches(db, tenantId).insertBatch(id, now);
  return id;
}

/** Tells every shard of the layout the batch's state (null: removed). 503 if one could not be told. */
export async function tellShards(
  env: Bindings,
  config: Config,
  tenantId: string,
  batchId: string,
  status: ScheduledSendStatus | null,
): Promise<{ held: number; cancelled: number; resumed: number }> {
  const results = await Promise.allSettled(
    allShards(layoutOf(config)).map((s) => hubStub(env, s).setBatchHold(tenantId, batchId, status)),
  );
  const failed = results.filter((r) => r.status === "rejected");
  if (failed.length > 0) {
    console.error(
      JSON.stringify({
        level: "error",
        msg: "a shard could not be told a batch state",
        batchId,
        status,
        failed: failed.length,
        error: String((failed[0] as PromiseRejectedResult).reason),
      }),
    );
    throw new AppError("unavailable", "Service unavailable", {
      fields: [
        {
          message:
            "The state was saved but not every delivery shard could be told; repeat it with PATCH (or DELETE) /v3/user/scheduled_sends/{batch_id}.",
          field: null,
          help: null,
        },
      ],
    });
  }
  const sum = { held: 0, cancelled: 0, resumed: 0 };
  for (const r of results) {
    if (r.status !== "fulfilled") continue;
    sum.held += r.value.held;
    sum.cancelled += r.value.cancelled;
    sum.resumed += r.value.resumed;
  }
  return sum;
}
