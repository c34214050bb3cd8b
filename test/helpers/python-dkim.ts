/**
 * A second, independent DKIM verifier for the tests: Debian's python3-dkim (dkimpy; ed25519 through
 * python3-nacl), run on message files with the DNS records given in memory. Every signature of a
 * message is checked by its index (dkimpy's plain verify() checks only the first).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const PY_VERIFY = `
import json, sys, dkim
records = json.load(open(sys.argv[1]))
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    value = records.get(name.rstrip(".").lower())
    return value.encode() if value else b""
out = {}
for f in sys.argv[2:]:
    d = dkim.DKIM(open(f, "rb").read())
    n = sum(1 for (k, v) in d.headers if k.lower() == b"dkim-signature")
    out[f] = [bool(d.verify(idx=i, dnsfunc=dnsfunc)) for i in range(n)]
print(json.dumps(out))
`;

/** The interpreter python3-dkim is installed for (its dkimverify's #!), not whatever python3 is first in PATH. */
function pythonForDkimpy(): string {
  let script: string;
  try {
    script = execFileSync("sh", ["-c", "command -v dkimverify"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error(
      "dkimverify not found: install python3-dkim (bash scripts/ensure.sh dkimverify:python3-dkim)",
    );
  }
  const shebang = fs.readFileSync(script, "utf8").split("\n")[0] ?? "";
  return shebang.replace(/^#!\s*/, "").split(/\s+/)[0] || "python3";
}

/**
 * dkimpy's verdict for each DKIM-Signature of each message file, in header order, keyed by file.
 * `records` maps a lower-case DNS name (`selector._domainkey.domain`) to its TXT value.
 */
export function dkimpyVerdicts(files: string[], records: Record<string, string>): Record<string, boolean[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scaisend-dkimpy-"));
  try {
    const recordsFile = path.join(dir, "records.json");
    fs.writeFileSync(recordsFile, JSON.stringify(records));
    const out = execFileSync(pythonForDkimpy(), ["-c", PY_VERIFY, recordsFile, ...files], {
      encoding: "utf8",
    });
    return JSON.parse(out) as Record<string, boolean[]>;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
