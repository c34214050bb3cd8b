/**
 * shared/senderkit/openapi.yaml (the SenderKit contract, carried over as is) → openapi.json beside
 * it, which the Worker serves at /v1/openapi.json. Run after changing the YAML:
 *   tsx scripts/senderkit-openapi.ts
 * test/e2e/senderkit-api.e2e.test.ts fails when the served JSON differs from the YAML.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";

const dir = path.join(import.meta.dirname, "..", "shared", "senderkit");
const doc = parse(readFileSync(path.join(dir, "openapi.yaml"), "utf8"));
writeFileSync(path.join(dir, "openapi.json"), `${JSON.stringify(doc, null, 2)}\n`);
