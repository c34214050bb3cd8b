/**
 * Early entries of the outcome journal (`appendEarly`, origin/src/journal/outcome-journal.ts): the
 * final outcomes of a job still running. They answer `finalOutcomes` across a crash, are never
 * reported as results (a frame without all of its dispatch's recipients would end the others at the
 * hub), survive compaction, and give way to the job's result and to its acknowledgement.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OutcomeJournal, readJournal, type ResultFrame } from "../../origin/src/journal/outcome-journal.ts";
import type { RecipientOutcome } from "../../shared/link/protocol.ts";

let root: string;
const open: OutcomeJournal[] = [];
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "outcome-journal-early-"));
});
afterEach(async () => {
  for (const j of open.splice(0)) await j.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const openJournal = (segmentBytes?: number) => {
  const j = OutcomeJournal.open({
    dir: root,
    nodeId: "node-e",
    fsyncIntervalMs: 20,
    retainMs: 86_400_000,
    ...(segmentBytes ? { segmentBytes } : {}),
  });
  open.push(j);
  return j;
};

const outcome = (recipient: string, status: RecipientOutcome["status"]): RecipientOutcome => ({
  recipient,
  status,
  response: status === "delivered" ? "250 2.0.0 OK" : "451 4.7.1 later",
});
const frame = (messageId: string, attempt: number, recipients: RecipientOutcome[]): ResultFrame => ({
  type: "result",
  jobId: `${messageId}.${attempt}`,
  messageId,
  attempt,
  recipients,
});

describe("outcome journal early entries", () => {
  it("answer finalOutcomes after a crash, and are not results to report", () => {
    const first = openJournal();
    first.appendEarly(frame("m1", 1, [outcome("a@x.test", "delivered")]), 0);
    first.append(frame("m2", 1, [outcome("c@x.test", "delivered")]), 0);
    // crash: opened again without closing
    open.splice(0);
    const second = openJournal();
    expect(second.recovery).toMatchObject({ inherited: 1, early: 1 });
    expect(second.inheritedFor(0).map((f) => f.jobId)).toEqual(["m2.1"]);
    expect([...second.finalOutcomes("m1").keys()]).toEqual(["a@x.test"]);
    expect(readJournal(root, "node-e").entries.map((e) => [e.frame.jobId, e.early === true])).toEqual([
      ["m1.1", true],
      ["m2.1", false],
    ]);
  });

  it("the job's result replaces its early entry; its acknowledgement removes it", () => {
    const j = openJournal();
    j.appendEarly(frame("m1", 1, [outcome("a@x.test", "delivered")]), 0);
    expect(j.size).toBe(1);
    j.append(frame("m1", 1, [outcome("a@x.test", "delivered"), outcome("b@y.test", "deferred")]), 0);
    expect(j.size).toBe(1);
    expect(readJournal(root, "node-e").entries).toEqual([
      expect.objectContaining({ frame: expect.objectContaining({ jobId: "m1.1" }) }),
    ]);
    expect(readJournal(root, "node-e").entries[0]!.early).toBeUndefined();
    j.acknowledged(["m1.1"]);
    expect(j.size).toBe(0);
  });

  it("an early entry stays early through compaction", () => {
    const j = openJournal(256);
    j.appendEarly(frame("m1", 1, [outcome("a@x.test", "delivered")]), 0);
    for (let n = 0; n < 5; n++) {
      j.append(frame(`f${n}`, 1, [outcome(`r${n}@x.test`, "delivered")]), 0);
      j.acknowledged([`f${n}.1`]);
    }
    open.splice(0);
    const again = openJournal();
    expect(again.recovery).toMatchObject({ inherited: 0, early: 1 });
    expect(again.inheritedShards()).toEqual([]);
    expect(again.finalOutcomes("m1").get("a@x.test")?.status).toBe("delivered");
  });

  it("an inherited early entry goes once a later dispatch of its message is acknowledged", () => {
    const first = openJournal();
    first.appendEarly(frame("m1", 1, [outcome("a@x.test", "delivered")]), 0);
    open.splice(0);
    const second = openJournal();
    second.append(frame("m1", 2, [outcome("a@x.test", "delivered")]), 0);
    second.acknowledged(["m1.2"]);
    expect(second.size).toBe(0);
  });
});
