// In-memory ring buffer of captured messages.
//
// Invariants:
//  - at most `capacity` messages are held; adding one more evicts the oldest;
//  - `byId` holds exactly the messages in `ring` (eviction and clear() remove from both);
//  - every change (add, eviction, delete, clear) is announced to subscribers after it is made,
//    so a listener that reads the store sees the new state (the web UI's live updates);
//  - every waiter is either pending in `waiters` or settled, never both; close() rejects
//    all pending waiters so no test or caller hangs on a stopped inbox.
import type { StoredMessage } from "./types.ts";

export type StoreEvent =
  { type: "new"; message: StoredMessage } | { type: "delete"; id: string } | { type: "clear" };

interface Waiter {
  pred: (m: StoredMessage) => boolean;
  resolve: (m: StoredMessage) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class MessageStore {
  readonly #capacity: number;
  readonly #ring: StoredMessage[] = []; // oldest first
  readonly #byId = new Map<string, StoredMessage>();
  readonly #waiters = new Set<Waiter>();
  readonly #listeners = new Set<(event: StoreEvent) => void>();
  #closed = false;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`maxMessages must be a positive integer, got ${capacity}`);
    }
    this.#capacity = capacity;
  }

  add(message: StoredMessage): void {
    this.#ring.push(message);
    this.#byId.set(message.id, message);
    const evictedIds: string[] = [];
    while (this.#ring.length > this.#capacity) {
      const evicted = this.#ring.shift();
      if (evicted) {
        this.#byId.delete(evicted.id);
        evictedIds.push(evicted.id);
      }
    }
    for (const id of evictedIds) this.#emit({ type: "delete", id });
    this.#emit({ type: "new", message });
    for (const waiter of this.#waiters) {
      let matched: boolean;
      try {
        matched = waiter.pred(message);
      } catch (err) {
        this.#settle(waiter);
        waiter.reject(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (matched) {
        this.#settle(waiter);
        waiter.resolve(message);
      }
    }
  }

  /** Newest first, the order the inbox page shows. */
  list(): StoredMessage[] {
    return this.#ring.slice().reverse();
  }

  get(id: string): StoredMessage | undefined {
    return this.#byId.get(id);
  }

  get size(): number {
    return this.#ring.length;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** Removes one message; false when there is none with that id. */
  delete(id: string): boolean {
    const message = this.#byId.get(id);
    if (!message) return false;
    this.#byId.delete(id);
    this.#ring.splice(this.#ring.indexOf(message), 1);
    this.#emit({ type: "delete", id });
    return true;
  }

  clear(): void {
    this.#ring.length = 0;
    this.#byId.clear();
    this.#emit({ type: "clear" });
  }

  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: (event: StoreEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(event: StoreEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A broken listener (e.g. a socket that just closed) must not stop delivery or the others.
      }
    }
  }

  /**
   * Resolves with the newest stored message matching `pred`, or the next one to arrive.
   * Checking stored messages first avoids the race where the message lands before the
   * caller starts waiting.
   */
  waitFor(pred: (m: StoredMessage) => boolean, timeoutMs: number): Promise<StoredMessage> {
    if (this.#closed) return Promise.reject(new Error("dev inbox is closed"));
    try {
      const existing = this.list().find(pred);
      if (existing) return Promise.resolve(existing);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return new Promise<StoredMessage>((resolve, reject) => {
      const waiter: Waiter = {
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#settle(waiter);
          reject(new Error(`dev inbox: no matching message within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  close(): void {
    this.#closed = true;
    for (const waiter of this.#waiters) {
      this.#settle(waiter);
      waiter.reject(new Error("dev inbox closed while waiting for a message"));
    }
  }

  #settle(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    this.#waiters.delete(waiter);
  }
}
