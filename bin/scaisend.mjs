#!/usr/bin/env node
// Launcher for the TypeScript CLI in scripts/cli.ts (tsx compiles it on the fly).
import { tsImport } from "tsx/esm/api";

const { runCli } = await tsImport("../scripts/cli.ts", import.meta.url);
try {
  process.exitCode = await runCli(process.argv.slice(2));
} catch (err) {
  console.error(`scaisend: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
