/**
 * A compose worker (origin/src/compose/compose.ts serveCompose) that dies on demand, for
 * test/origin/compose-pool.test.ts: a job whose subject is "die always" ends the thread with an
 * uncaught exception every time; "die once" exits the thread only while the marker file does not
 * exist yet (and creates it), so the retry in a fresh worker succeeds; "hang" blocks the thread
 * until the pool's request timeout ends it.
 */
import fs from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { serveCompose, type ComposeWorkerData } from "../../origin/src/compose/compose.ts";

const data = workerData as ComposeWorkerData & { marker: string };
serveCompose(parentPort!, data, ({ job }) => {
  if (job.message.subject === "die always") {
    // Never answers: the uncaught exception ends the thread first.
    return new Promise<void>(() => {
      setImmediate(() => {
        throw new Error("simulated crash");
      });
    });
  }
  if (job.message.subject === "hang") {
    // Blocks the thread for good: only terminate() ends it.
    for (;;);
  }
  if (job.message.subject === "die once" && !fs.existsSync(data.marker)) {
    fs.writeFileSync(data.marker, "died");
    process.exit(7);
  }
});
