/**
 * The outcome journal on a real directory (origin/src/journal/outcome-journal.ts): what a process that
 * died without closing it left is read back in append order, per shard; a torn last line is skipped
 * and never followed by new appends; resultAck marks entries done (this boot's), while entries of an
 * earlier boot stay as answers until a later dispatch of their message is acknowledged; segments are
 * compacted so the directory stays small; a second live process under one NODE_ID is refused.
 * "A crash" here is opening the journal again without closing the first instance: the bytes a
 * killed process had written are exactly those the files hold.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  JournalInUseError,
  nodeDirName,
  OutcomeJournal,
  type ResultFrame,
} from "../../origin/src/journal/outcome-journal.ts";

let root: string;
const open: OutcomeJournal[] = [];

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "outcome-journal-"));
});
afterEach(async () => {
  for (const j of open.splice(0)) await j.close();
  fs.rmSync(root, { recursive: true, force: true });
});

function openJournal(
  o: { nodeId?: string; segmentBytes?: number; now?: () => number; retainMs?: number } = {},
) {
  const j = OutcomeJournal.open({
    dir: root,
    nodeId: o.nodeId ?? "node-a",
    fsyncIntervalMs: 20,
    retainMs: o.retainMs ?? 86_400_000,
    ...(o.segmentBytes ? { segmentBytes: o.segmentBytes } : {}),
    ...(o.now ? { now: o.now } : {}),
  });
  open.push(j);
  return j;
}

function frame(
  messageId: string,
  attempt: number,
  status: "delivered" | "deferred" | "bounced" = "delivered",
): ResultFrame {
  return {
    type: "result",
    jobId: `${messageId}.${attempt}`,
    messageId,
    attempt,
    recipients: [
      {
        recipient: `to@${messageId}.example`,
        status,
        smtpCode: status === "delivered" ? 250 : 451,
        response: status === "delivered" ? "250 2.0.0 queued as 1" : "451 4.7.1 try later",
      },
    ],
  };
}

const nodeDir = (nodeId = "node-a") => path.join(root, nodeDirName(nodeId));
const segments = (nodeId = "node-a") => fs.readdirSync(nodeDir(nodeId)).filter((n) => n.endsWith(".jsonl"));

describe("outcome journal", () => {
  it("gives back what a killed process wrote, in append order and per shard", () => {
    const first = openJournal();
    first.append(frame("m1", 1), 0);
    first.append(frame("m2", 3), 1);
    first.append(frame("m3", 1, "deferred"), 0);
    // Killed: never closed.
    const second = openJournal();
    expect(second.recovery).toMatchObject({ inherited: 3, skippedLines: 0 });
    expect(second.inheritedFor(0).map((f) => f.jobId)).toEqual(["m1.1", "m3.1"]);
    expect(second.inheritedFor(1).map((f) => f.jobId)).toEqual(["m2.3"]);
    expect(second.inheritedShards()).toEqual([0, 1]);
    // The frames are the ones that were written, ready to be sent as they are.
    expect(second.inheritedFor(1)[0]).toEqual(frame("m2", 3));
    // Only final outcomes answer a later dispatch; a deferred recipient must be tried again.
    expect([...second.finalOutcomes("m1").keys()]).toEqual(["to@m1.example"]);
    expect(second.finalOutcomes("m3").size).toBe(0);
  });

  it("skips a torn last line, and never appends after one", () => {
    const first = openJournal();
    first.append(frame("m1", 1), 0);
    first.append(frame("m2", 1), 0);
    // A write cut short by the crash: half a line, no newline.
    const seg = path.join(nodeDir(), segments()[0]!);
    const whole = `${JSON.stringify({ r: frame("m3", 1), s: 0, at: Date.now() })}\n`;
    fs.appendFileSync(seg, whole.slice(0, 40));

    const second = openJournal();
    expect(second.recovery).toMatchObject({ inherited: 2, skippedLines: 1 });
    second.append(frame("m4", 1), 0);

    const third = openJournal();
    expect(third.recovery).toMatchObject({ inherited: 3, skippedLines: 0 });
    expect(third.inheritedFor(0).map((f) => f.jobId)).toEqual(["m1.1", "m2.1", "m4.1"]);
  });

  it("drops this boot's results once acknowledged, with the older entries of the same message", () => {
    const first = openJournal();
    first.append(frame("m1", 1), 0);
    first.append(frame("m2", 1), 0);
    first.append(frame("m3", 1, "deferred"), 0);
    first.append(frame("m3", 2), 0);
    first.acknowledged(["m1.1", "m3.2", "not-journaled.1"]);
    expect(first.size).toBe(1);
    const second = openJournal();
    expect(second.inheritedFor(0).map((f) => f.jobId)).toEqual(["m2.1"]);
  });

  it("keeps an earlier boot's result through the ack of its replay, until a later dispatch of the message is acknowledged", () => {
    const first = openJournal();
    first.append(frame("m1", 1), 0);
    const second = openJournal();
    // The replay's resultAck may mean "recorded" or "no use: the row moved on"; the entry stays an answer.
    second.acknowledged(["m1.1"]);
    expect(second.finalOutcomes("m1").get("to@m1.example")?.status).toBe("delivered");
    // The re-dispatch is answered from the journal (a result of this boot), and that one is acknowledged.
    second.append({ ...frame("m1", 2) }, 0);
    second.acknowledged(["m1.2"]);
    expect(second.finalOutcomes("m1").size).toBe(0);
    expect(second.size).toBe(0);
    const third = openJournal();
    expect(third.recovery.inherited).toBe(0);
  });

  it("compacts into new segments as it grows: the directory stays small, unacknowledged entries survive", () => {
    const j = openJournal({ segmentBytes: 4_096 });
    for (let i = 0; i < 500; i++) {
      j.append(frame(`m${i}`, 1), 0);
      // All but every 100th are acknowledged at once.
      if (i % 100 !== 0) j.acknowledged([`m${i}.1`]);
    }
    expect(j.size).toBe(5);
    const names = segments();
    expect(names.length).toBe(1);
    const bytes = names.reduce((n, f) => n + fs.statSync(path.join(nodeDir(), f)).size, 0);
    // 500 results (~150 bytes each) and their marks went through; what is left is one segment's worth.
    expect(bytes).toBeLessThan(4_096 + 1_000);
    const again = openJournal({ segmentBytes: 4_096 });
    expect(again.inheritedFor(0).map((f) => f.jobId)).toEqual([
      "m0.1",
      "m100.1",
      "m200.1",
      "m300.1",
      "m400.1",
    ]);
  });

  it("forgets an earlier boot's entries after the retention (JOB_RESULT_TTL_S)", () => {
    let now = 1_000_000;
    const first = openJournal({ now: () => now, retainMs: 60_000 });
    first.append(frame("old", 1), 0);
    now += 50_000;
    first.append(frame("new", 1), 0);
    now += 20_000;
    const second = openJournal({ now: () => now, retainMs: 60_000 });
    expect(second.inheritedFor(0).map((f) => f.jobId)).toEqual(["new.1"]);
  });

  it("leaves nothing behind when closed with every result acknowledged, and keeps what is not", async () => {
    const j = openJournal();
    j.append(frame("m1", 1), 0);
    j.acknowledged(["m1.1"]);
    await j.close();
    expect(fs.existsSync(nodeDir())).toBe(false);

    const k = openJournal();
    k.append(frame("m2", 1), 0);
    await k.close();
    expect(
      openJournal()
        .inheritedFor(0)
        .map((f) => f.jobId),
    ).toEqual(["m2.1"]);
  });

  it("keeps one directory per NODE_ID, whatever characters it holds", () => {
    const a = openJournal({ nodeId: "../evil/.." });
    a.append(frame("m1", 1), 0);
    expect(fs.readdirSync(root)).toEqual([nodeDirName("../evil/..")]);
    expect(nodeDirName("../evil/..")).not.toMatch(/[/.]/);
    expect(openJournal({ nodeId: "other" }).recovery.inherited).toBe(0);
  });

  it("refuses a node directory another live process holds, and takes over one of a dead process", async () => {
    fs.mkdirSync(nodeDir(), { recursive: true });
    // The parent of this test worker is alive and is not this process.
    fs.writeFileSync(path.join(nodeDir(), "lock"), JSON.stringify({ pid: process.ppid }));
    expect(() => openJournal()).toThrow(JournalInUseError);

    const child = spawn(process.execPath, ["-e", ""]);
    const pid = child.pid!;
    await new Promise((r) => child.once("exit", r));
    fs.writeFileSync(path.join(nodeDir(), "lock"), JSON.stringify({ pid }));
    expect(openJournal().recovery.inherited).toBe(0);
  });

  it("names JOURNAL_DIR when it cannot write there", () => {
    const file = path.join(root, "not-a-dir");
    fs.writeFileSync(file, "");
    expect(() =>
      OutcomeJournal.open({ dir: file, nodeId: "n", fsyncIntervalMs: 20, retainMs: 60_000 }),
    ).toThrow(/cannot write .*set JOURNAL_DIR/);
  });

  it("with JOURNAL_FSYNC_MS=0 syncs every append (and still reads back)", () => {
    const j = OutcomeJournal.open({ dir: root, nodeId: "sync", fsyncIntervalMs: 0, retainMs: 60_000 });
    open.push(j);
    j.append(frame("m1", 1), 2);
    expect(
      openJournal({ nodeId: "sync" })
        .inheritedFor(2)
        .map((f) => f.jobId),
    ).toEqual(["m1.1"]);
  });
});
