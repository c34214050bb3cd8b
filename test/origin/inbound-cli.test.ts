/** `scaisend bounce classify` as a postmaster runs it: the real bin/scaisend.mjs, a message on stdin. */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const fixture = (name: string) => readFileSync(path.join(root, "test/fixtures/inbound", `${name}.eml`));

function run(input: Buffer | string, env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const { VERP_SECRET: _drop, ...base } = process.env;
    const child = spawn(process.execPath, [path.join(root, "bin/scaisend.mjs"), "bounce", "classify"], {
      cwd: root,
      env: { ...base, ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe("scaisend bounce classify", () => {
  it("prints one JSON object per failed recipient and exits 0", async () => {
    const r = await run(fixture("microsoft365-blocked-ip-and-dbeb"));
    expect(r.code).toBe(0);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([
      expect.objectContaining({
        recipient: "kim@fabrikam.com",
        type: "block",
        reason: "spam_block",
        status: "5.7.708",
      }),
      expect.objectContaining({
        recipient: "luis@fabrikam.com",
        type: "hard",
        reason: "user_unknown",
        status: "5.4.1",
      }),
    ]);
    expect(lines[0].message_id).toBe("msg_01JDQ3X8W5K7M2N4P6R8T0V2Y9");
    expect(lines[0].diagnostic).toContain("traffic not accepted from this IP");
  }, 30_000);

  it("verifies VERP tokens only with VERP_SECRET", async () => {
    const without = await run(fixture("yahoo-failure-notice"));
    // Not trusted without the key: the Message-ID of the quoted original is used instead.
    expect(JSON.parse(without.stdout)).toMatchObject({ message_id_source: "message-id", verp: "invalid" });
    expect(without.stderr).toContain("VERP_SECRET is not set");
    const withKey = await run(fixture("yahoo-failure-notice"), {
      VERP_SECRET: "fixture-verp-secret-0123456789abcdef",
    });
    expect(JSON.parse(withKey.stdout)).toMatchObject({
      message_id: "msg_01JDQ3X8W5K7M2N4P6R8T0V2YB",
      message_id_source: "verp",
    });
  }, 30_000);

  it("prints nothing for an auto-reply, and says why", async () => {
    const r = await run(fixture("autoreply-outlook-out-of-office"));
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("auto_reply");
  }, 30_000);

  it("exits 1 with a message on input that is not a message", async () => {
    for (const input of ["", "this is not a mail message\n"]) {
      const r = await run(input);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/cannot classify/);
    }
  }, 30_000);
});
