/** The fair queue of the llama.cpp backend's sequences (interactive first, batch by tenant in turn). */

/** A waiter for a free sequence. */
interface SlotWaiter<T> {
  resolve(item: T): void;
  reject(error: unknown): void;
}

/**
 * A pool of items (the context's sequences) in two classes: every interactive waiter is served
 * before any batch waiter, first come first served; batch waiters take turns by fairness key (the
 * tenant), first come first served within a key, so one tenant's queued chunk of lines does not
 * hold back another's. `acquire` resolves at once when an item is free, otherwise when one is
 * released to this waiter; an abort removes the waiter.
 */
export class SlotQueue<T> {
  private readonly free: T[];
  private readonly interactive: SlotWaiter<T>[] = [];
  /** Batch waiters by fairness key; the Map's order is the keys' turn order. */
  private readonly batch = new Map<string, SlotWaiter<T>[]>();
  private closedError: Error | null = null;

  constructor(items: Iterable<T>) {
    this.free = [...items];
  }

  /** Requests waiting for an item. */
  get waiting(): number {
    let n = this.interactive.length;
    for (const line of this.batch.values()) n += line.length;
    return n;
  }

  /** Takes a free item, or waits in line for one. Rejects with the signal's reason on abort. */
  acquire(signal: AbortSignal, priority: 'interactive' | 'batch' = 'interactive', fairnessKey = ''): Promise<T> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    if (signal.aborted) return Promise.reject(signal.reason);
    const item = this.free.shift();
    if (item !== undefined) return Promise.resolve(item);
    let line = this.interactive;
    if (priority === 'batch') {
      line = this.batch.get(fairnessKey) ?? [];
      if (line.length === 0) this.batch.set(fairnessKey, line);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        const index = line.indexOf(waiter);
        if (index >= 0) line.splice(index, 1);
        if (priority === 'batch' && line.length === 0 && this.batch.get(fairnessKey) === line) this.batch.delete(fairnessKey);
        reject(signal.reason);
      };
      const waiter: SlotWaiter<T> = {
        resolve: (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      line.push(waiter);
    });
  }

  /** The next batch waiter: the first of the key whose turn it is; that key then goes last. */
  private nextBatchWaiter(): SlotWaiter<T> | undefined {
    for (const [key, line] of this.batch) {
      this.batch.delete(key);
      const waiter = line.shift();
      if (line.length > 0) this.batch.set(key, line);
      if (waiter !== undefined) return waiter;
    }
    return undefined;
  }

  /** Hands the item to the oldest interactive waiter, else to the batch key whose turn it is, or puts it back in the free list. */
  release(item: T): void {
    const waiter = this.interactive.shift() ?? this.nextBatchWaiter();
    if (waiter !== undefined) waiter.resolve(item);
    else this.free.push(item);
  }

  /** Rejects every waiter and all later `acquire` calls with `error`. */
  close(error: Error): void {
    this.closedError = error;
    const waiters = [...this.interactive.splice(0), ...[...this.batch.values()].flat()];
    this.batch.clear();
    for (const waiter of waiters) waiter.reject(error);
  }
}
