/**
 * Compose pool: builds and DKIM-signs messages (compose.ts) in worker threads, so the event loop
 * that speaks SMTP and the link never waits on MIME building or an RSA signature, and every core
 * does some of that work (docs/architecture.md, "Composing and signing").
 *
 * - `threads` workers (COMPOSE_THREADS), started on demand or all at once (`prestart`); 0 runs
 *   everything on the calling thread (tests that want one thread, and machines where threads do
 *   not pay).
 * - Errors come back as values: `{ ok: false, error }` for a message that cannot be built or
 *   signed, never a rejected promise, so the engine turns it into a `failed` outcome.
 * - A worker that dies (uncaught error, exit, out of memory, or a request running past
 *   `requestTimeoutMs`, which ends it) is replaced; each request it held is tried once more, and a
 *   request whose worker died twice fails with the reason.
 * - `close()` drains: queued and running requests finish, then the threads are terminated. A
 *   worker holds the process open only while it has work (ref/unref).
 *
 * Keys are cached per worker (dkim.ts keeps the parsed KeyObject per PEM), so a node signing for a
 * few domains parses each key once per thread.
 */
import { createRequire } from "node:module";
import os from "node:os";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { ComposableJob } from "./build-mime.ts";
import {
  composeMessage,
  type ComposeBatch,
  type ComposeOptions,
  type ComposeReply,
  type ComposeRequest,
  type ComposeWorkerData,
} from "./compose.ts";

export type ComposeResult = { ok: true; raw: Buffer } | { ok: false; error: string };

export interface ComposePoolStats {
  /** Worker threads alive now. */
  threads: number;
  /** Requests running in a worker. */
  running: number;
  /** Requests waiting for a worker. */
  queued: number;
  /** Workers that died and were replaced. */
  crashes: number;
}

export interface ComposePool {
  compose(job: ComposableJob): Promise<ComposeResult>;
  stats(): ComposePoolStats;
  /** Lets every queued and running request finish, then ends the threads. */
  close(): Promise<void>;
}

export type ComposeLog = (level: "info" | "warn", msg: string, extra?: Record<string, unknown>) => void;

export interface ComposePoolOptions extends ComposeOptions {
  /** Worker threads; 0 = compose on the calling thread. */
  threads: number;
  log?: ComposeLog;
  /**
   * Start every thread now rather than at the first request, so the first messages after boot do
   * not wait for a worker to load its modules (the engine does; idle workers hold no process open).
   */
  prestart?: boolean;
  /**
   * A request running longer than this in a worker ends that worker (and counts as its death), so
   * a message that hangs the builder fails instead of holding its job forever. Default 30 s.
   */
  requestTimeoutMs?: number;
  /** Tests only: a different worker entry speaking the same protocol (compose.ts serveCompose). */
  workerUrl?: URL;
  /** Tests only: extra workerData for that entry. */
  workerData?: Record<string, unknown>;
}

/** Default COMPOSE_THREADS: one per core but one, left to the event loop (measured in docs/architecture.md). */
export function defaultComposeThreads(): number {
  return Math.max(1, os.availableParallelism() - 1);
}

/**
 * Requests go to a worker in batches of at most BATCH, one message each way per batch: a
 * postMessage costs the sending thread a structured clone plus a wake-up of the other thread (a
 * system call), which in the origin's CPU profile was ~0.25 ms of the event loop per message when
 * every request and reply travelled alone. A worker holds up to two batches (PER_WORKER), so it
 * has the next one while the event loop handles the replies of the last. A single request (a quiet
 * node) still goes at once, alone: a batch is whatever is waiting at the end of this loop turn.
 */
const BATCH = 4;
const PER_WORKER = 2 * BATCH;
/**
 * The compose thread's young generation (V8's new space: two semi-spaces plus its large-object
 * space, so 96 MiB is `--max-semi-space-size=32`, twice V8's default of 16 on a 64-bit machine).
 * Every message allocates its MIME, canonicalized headers and signature there; with the default,
 * scavenges ran often enough that runs with this size used 14–21 % less CPU per message in four
 * alternated pairs of `--only=origin --warmup=3000` runs, 6 % less on average in two pairs after the
 * default warm-up (README, "Performance"), for 20–40 MiB more peak RSS per thread. The main thread
 * gets the same from the node flag (origin/Dockerfile, docs/operations.md).
 */
export const COMPOSE_YOUNG_GENERATION_MB = 96;
/** A request whose worker died this many times fails. */
const MAX_CRASHES = 2;
/** Building and signing takes milliseconds; this is for a worker that hangs. */
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * A worker thread runs TypeScript only with a loader. Under tsx (`tsx origin/src/main.ts`, or
 * `node --import tsx`) the parent's execArgv holds tsx's loader and a worker inherits it; anywhere
 * else (vitest runs sources through Vite, not a Node loader) the worker gets `--import tsx`.
 */
function workerExecArgv(): string[] | undefined {
  if (process.execArgv.some((arg) => arg.includes("tsx"))) return undefined;
  const loader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  return ["--import", loader];
}

interface Task {
  id: number;
  job: ComposableJob;
  crashes: number;
  timer?: NodeJS.Timeout;
  resolve(result: ComposeResult): void;
}

interface Slot {
  worker: Worker;
  running: Map<number, Task>;
  /** Set by the 'error' event, read at 'exit'. */
  crash?: string;
  /** Running a request whose previous worker died: takes nothing else until it answers. */
  isolated: boolean;
  /** Its modules are loaded (the worker said `ready`): request timeouts run from then on. */
  ready: boolean;
}

export function createComposePool(options: ComposePoolOptions): ComposePool {
  const log: ComposeLog = options.log ?? (() => {});
  const composeOptions: ComposeOptions = options.dkimFastPath === false ? { dkimFastPath: false } : {};
  let closing = false;

  if (options.threads <= 0) {
    let running = 0;
    const idle: Array<() => void> = [];
    return {
      async compose(job) {
        if (closing) return { ok: false, error: "the compose pool is closed" };
        running++;
        try {
          return { ok: true, raw: await composeMessage(job, composeOptions) };
        } catch (err) {
          return { ok: false, error: errorText(err) };
        } finally {
          if (--running === 0) for (const done of idle.splice(0)) done();
        }
      },
      stats: () => ({ threads: 0, running, queued: 0, crashes: 0 }),
      async close() {
        closing = true;
        if (running > 0) await new Promise<void>((r) => idle.push(r));
      },
    };
  }

  const workerUrl = options.workerUrl ?? new URL("./compose-worker.ts", import.meta.url);
  const execArgv = workerExecArgv();
  const workerData: ComposeWorkerData & Record<string, unknown> = {
    ...options.workerData,
    options: composeOptions,
  };
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const slots = new Set<Slot>();
  const queue: Task[] = [];
  let nextId = 1;
  let crashes = 0;
  let drained: (() => void) | null = null;
  let exited: Array<Promise<void>> = [];

  const pending = () => {
    let n = queue.length;
    for (const s of slots) n += s.running.size;
    return n;
  };

  function spawn(): Slot {
    const worker = new Worker(workerUrl, {
      workerData,
      ...(execArgv ? { execArgv } : {}),
      resourceLimits: { maxYoungGenerationSizeMb: COMPOSE_YOUNG_GENERATION_MB },
      // A worker is a helper of this process: its stdout/stderr are the process's own.
      stdout: false,
      stderr: false,
    });
    const slot: Slot = { worker, running: new Map(), isolated: false, ready: false };
    slots.add(slot);
    worker.unref();
    worker.on("message", (message: ComposeReply) => {
      if ("ready" in message) {
        slot.ready = true;
        for (const task of slot.running.values()) startTimer(slot, task);
        return;
      }
      for (const reply of message.replies) {
        const task = slot.running.get(reply.id);
        if (!task) continue;
        slot.running.delete(reply.id);
        clearTimeout(task.timer);
        task.resolve(
          reply.ok
            ? { ok: true, raw: Buffer.from(reply.raw.buffer, reply.raw.byteOffset, reply.raw.byteLength) }
            : { ok: false, error: reply.error },
        );
      }
      if (slot.running.size === 0) {
        slot.isolated = false;
        worker.unref();
      }
      // The requests these results let start (their promises run after this handler) join one batch.
      settleSoon();
    });
    worker.on("error", (err) => {
      slot.crash = errorText(err);
    });
    exited.push(
      new Promise<void>((resolve) =>
        worker.once("exit", (code) => {
          slots.delete(slot);
          const held = [...slot.running.values()];
          slot.running.clear();
          if (held.length > 0 || !closing) {
            const reason = slot.crash ?? `exited with code ${code}`;
            crashes++;
            log("warn", "compose worker died; replacing it", { reason, requests: held.length });
            for (const task of held) {
              clearTimeout(task.timer);
              task.crashes++;
              if (task.crashes >= MAX_CRASHES) {
                task.resolve({
                  ok: false,
                  error: `the compose worker died ${task.crashes} times while building this message (${reason})`,
                });
              } else {
                queue.unshift(task);
              }
            }
          }
          resolve();
          settle();
        }),
      ),
    );
    return slot;
  }

  /**
   * Hands queued requests to workers with room, starting workers up to `threads`. A request whose
   * worker died runs alone in its worker, so a message that kills its thread takes no other
   * request with it a second time.
   */
  function dispatch(): void {
    const batches = new Map<Slot, ComposeRequest[]>();
    while (queue.length > 0) {
      const suspect = queue[0]!.crashes > 0;
      let best: Slot | undefined;
      for (const s of slots) {
        if (s.isolated || s.running.size >= (suspect ? 1 : PER_WORKER)) continue;
        if (!best || s.running.size < best.running.size) best = s;
      }
      if ((!best || best.running.size > 0) && slots.size < options.threads) best = spawn();
      if (!best) break;
      const task = queue.shift()!;
      best.running.set(task.id, task);
      best.isolated = suspect;
      best.worker.ref();
      if (best.ready) startTimer(best, task);
      const batch = batches.get(best) ?? [];
      batch.push({ id: task.id, job: task.job });
      batches.set(best, batch);
      if (batch.length >= BATCH) post(best, batches);
    }
    for (const slot of [...batches.keys()]) post(slot, batches);
  }

  function post(slot: Slot, batches: Map<Slot, ComposeRequest[]>): void {
    const requests = batches.get(slot);
    batches.delete(slot);
    if (!requests || requests.length === 0) return;
    const message: ComposeBatch = { requests };
    slot.worker.postMessage(message);
  }

  let settleScheduled = false;
  /** settle() at the end of this loop turn, once for everything that happened in it. */
  function settleSoon(): void {
    if (settleScheduled) return;
    settleScheduled = true;
    setImmediate(() => {
      settleScheduled = false;
      settle();
    });
  }

  function startTimer(slot: Slot, task: Task): void {
    task.timer = setTimeout(() => {
      slot.crash ??= `building the message took longer than ${requestTimeoutMs} ms`;
      void slot.worker.terminate();
    }, requestTimeoutMs);
    task.timer.unref();
  }

  function settle(): void {
    dispatch();
    if (drained && pending() === 0) {
      const done = drained;
      drained = null;
      done();
    }
  }

  if (options.prestart) while (slots.size < options.threads) spawn();

  let closed: Promise<void> | null = null;
  return {
    compose(job) {
      if (closing) return Promise.resolve({ ok: false, error: "the compose pool is closed" });
      return new Promise<ComposeResult>((resolve) => {
        queue.push({ id: nextId++, job, crashes: 0, resolve });
        settleSoon();
      });
    },
    stats() {
      let running = 0;
      for (const s of slots) running += s.running.size;
      return { threads: slots.size, running, queued: queue.length, crashes };
    },
    close() {
      closed ??= (async () => {
        closing = true;
        if (pending() > 0) await new Promise<void>((r) => (drained = r));
        const ending = exited;
        exited = [];
        await Promise.all([...slots].map((s) => s.worker.terminate()));
        await Promise.all(ending);
      })();
      return closed;
    },
  };
}
