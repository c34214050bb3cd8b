// In-memory ring buffer of captured messages.
//
// Invariants:
//  - at most `capacity` messages are held; adding one more evicts the oldest;
//  - `byId` holds exactly the messages in `ring` (eviction and clear() remove from both);
//  - every waiter is either pending in `waiters` or settled, never both; close() rejects
//    all pending waiters so no test or caller hangs on a stopped inbox.
import type { StoredMessage } from "./types.ts";

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
    while (this.#ring.length > this.#capacity) {
      const evicted = this.#ring.shift();
      if (evicted) this.#byId.delete(evicted.id);
    }
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

  clear(): void {
    this.#ring.length = 0;
    this.#byId.clear();
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
