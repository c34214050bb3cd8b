/**
 * Origin entry point: read config, start the node, drain on SIGTERM/SIGINT.
 * `tsx origin/src/main.ts --help` lists every setting.
 */
import { describeConfig, loadOriginConfig } from "./config.ts";
import { startOriginNode } from "./node.ts";
import { createLogger } from "./ops/log.ts";

if (process.argv.includes("--help")) {
  process.stdout.write(`ScaiSend origin node. Settings (environment variables):\n${describeConfig()}\n`);
  process.exit(0);
}

const log = createLogger();
let config;
try {
  config = loadOriginConfig();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
}

const node = await startOriginNode(config, log);
let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info("signal received", { signal });
    node.drain().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error("drain failed", { error: String(err) });
        process.exit(1);
      },
    );
  });
}
