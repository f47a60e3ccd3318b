/**
 * Two ways for the lines of a batch's chunk (one `admitLines` or `completeLines` activity) to
 * share a step's database work while each line still runs the step on its own:
 * `memoBy` answers a lookup once per distinct key (the same decision each line would get a moment
 * apart), and `batchCalls` sends the calls made in the same turn of the event loop as one call
 * over all of them (one round trip), each caller getting its own result.
 */

/** `fn` answering each distinct key once (failures included): lookups that a chunk's lines share. */
export function memoBy<I, O>(key: (input: I) => string, fn: (input: I) => Promise<O>): (input: I) => Promise<O> {
  const seen = new Map<string, Promise<O>>();
  return (input) => {
    const k = key(input);
    let p = seen.get(k);
    if (p === undefined) {
      p = fn(input);
      seen.set(k, p);
    }
    return p;
  };
}

/**
 * The one-input form of `run`: inputs passed in the same turn (before the event loop's next
 * check phase) go to one `run`, which returns one result per input in order. A failure of `run`
 * reaches every caller of that call.
 */
export function batchCalls<I, O>(run: (inputs: I[]) => Promise<O[]>): (input: I) => Promise<O> {
  let pending: Array<{ input: I; resolve: (o: O) => void; reject: (err: unknown) => void }> = [];
  const flush = () => {
    const calls = pending;
    pending = [];
    run(calls.map((c) => c.input)).then(
      (results) => calls.forEach((c, i) => c.resolve(results[i] as O)),
      (err: unknown) => calls.forEach((c) => c.reject(err)),
    );
  };
  return (input) => new Promise<O>((resolve, reject) => {
    pending.push({ input, resolve, reject });
    if (pending.length === 1) setImmediate(flush);
  });
}
