/** Entry of one compose worker thread (pool.ts): builds and signs messages until terminated. */
import { parentPort, workerData } from "node:worker_threads";
import { serveCompose, type ComposeWorkerData } from "./compose.ts";

if (!parentPort)
  throw new Error("compose-worker.ts runs only as a worker thread (origin/src/compose/pool.ts)");
serveCompose(parentPort, workerData as ComposeWorkerData);
