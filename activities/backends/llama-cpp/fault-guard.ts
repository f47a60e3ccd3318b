/**
 * The llama.cpp backend's guard against faults in node-llama-cpp's decode loop.
 *
 * node-llama-cpp's sampler throws inside a decode loop that runs in a promise nobody awaits
 * (`LlamaContext.dispatchPendingBatch`): such a throw is an unhandled rejection, which ends a Node
 * process, and leaves the sequence waiting forever. Every request is checked by the shared
 * validator (domain/sampling-params.ts) before node-llama-cpp sees it; against what the validator
 * cannot foresee, {@link faultGuard} catches unhandled rejections raised from node-llama-cpp's code
 * while a backend is open and fails the generations in flight instead (each attempt fails as
 * `unavailable` and is retried; their sequences are replaced, never reused).
 */

/** Whether an unhandled rejection came from node-llama-cpp's own code (its decode loop). */
function isLlamaFault(reason: unknown): boolean {
  return reason instanceof Error && /node-llama-cpp/.test(reason.stack ?? '');
}

/**
 * The process's guard against node-llama-cpp's unawaited decode loop. While at least one backend
 * is open it listens for `unhandledRejection`: a rejection from node-llama-cpp's code fails every
 * generation in flight in this process (which one the failed batch served cannot be known; the
 * others are retried), one from elsewhere is rethrown as Node would when no other listener
 * decides. Process-wide state by nature: the event is the process's.
 */
export const faultGuard = {
  /** Fails a generation in flight, by the function its `register` returned. */
  inFlight: new Set<(error: unknown) => void>(),
  openBackends: 0,
  /** Faults seen (for tests and logs). */
  faults: 0,
  listener(reason: unknown): void {
    if (!isLlamaFault(reason)) {
      if (process.listenerCount('unhandledRejection') === 1) throw reason;
      return;
    }
    faultGuard.faults += 1;
    const failing = [...faultGuard.inFlight];
    process.emitWarning(`node-llama-cpp failed in its decode loop (${failing.length} generation(s) failed): ${reason instanceof Error ? reason.message : String(reason)}`, 'SluiceLlamaFault');
    for (const fail of failing) fail(reason);
  },
  open(): void {
    if (faultGuard.openBackends++ === 0) process.on('unhandledRejection', faultGuard.listener);
  },
  close(): void {
    if (--faultGuard.openBackends === 0) process.off('unhandledRejection', faultGuard.listener);
  },
  /** A generation starts decoding: `fault` rejects if node-llama-cpp fails meanwhile; call `done` at its end. */
  register(): { fault: Promise<never>; done: () => void } {
    let fail: (error: unknown) => void = () => undefined;
    const fault = new Promise<never>((_, reject) => {
      fail = reject;
    });
    fault.catch(() => undefined);
    faultGuard.inFlight.add(fail);
    return { fault, done: () => faultGuard.inFlight.delete(fail) };
  },
};
