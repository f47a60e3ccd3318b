/**
 * At most `limit` of a batch's lines running the request pipeline at once, the others waiting in
 * order for a slot. Every workflow activation runs the continuations of the pipelines whose
 * activities answered in it, and a pipeline's continuation creates hundreds of promises (the SDK's
 * promise hook captures a stack trace for each): with hundreds of lines off the chunk path at
 * once (every line falling back to another deployment), one activation ran for seconds, and one
 * past the SDK's `isolateExecutionTimeout` (5 s, under load) is terminated by V8 mid-microtask,
 * which leaves Node's async-hook stack unbalanced and aborts the whole worker process ("async hook
 * stack has become corrupted"; BENCHMARKS.md). Bounding the pipelines alive bounds that work,
 * however many of their results one activation carries.
 * Workflow-only module (pure: no I/O, no module-level state).
 */

/** A runner of `run`s, at most `limit` of them unsettled at once; a `run` waiting for a slot starts when one ends. */
export interface LineSlots {
  <T>(run: () => Promise<T>): Promise<T>;
  /** The most runs unsettled at once so far (at most `limit`). */
  readonly peak: number;
}

/** `limit` slots; a `run` given while one is free starts at once (synchronously). */
export function lineSlots(limit: number): LineSlots {
  // Fewer than one slot would leave every run waiting forever.
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`lineSlots: limit must be a positive integer, got ${limit}`);
  let running = 0;
  let peak = 0;
  const waiting: Array<() => void> = [];
  const next = () => {
    while (running < limit && waiting.length > 0) {
      running += 1;
      peak = Math.max(peak, running);
      (waiting.shift() as () => void)();
    }
  };
  const slots = <T>(run: () => Promise<T>) => new Promise<T>((resolve, reject) => {
    waiting.push(() => {
      const ended = () => {
        running -= 1;
        next();
      };
      let started: Promise<T>;
      try {
        started = run();
      } catch (err) {
        started = Promise.reject(err);
      }
      started.then((value) => {
        ended();
        resolve(value);
      }, (err: unknown) => {
        ended();
        reject(err);
      });
    });
    next();
  });
  return Object.defineProperty(slots, 'peak', { get: () => peak, enumerable: true }) as LineSlots;
}
