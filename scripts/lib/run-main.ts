/**
 * Runs an entry point: starts it, stops it once on SIGINT/SIGTERM, exits non-zero if start-up fails.
 * A signal during start-up aborts `signal`: the entry point stops what it started so far (its
 * error path) and the process exits without reporting a failure.
 */
import type { Logger } from '../../runtime/logger.js';
import { ConfigError } from '../../runtime/config.js';

/**
 * Runs `load` (an entry point's `loadConfig()`); on a {@link ConfigError} prints what is wrong,
 * without a stack trace, and exits 1: a bad variable is the user's to fix, not a crash.
 */
export function configOrExit<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`Configuration error: ${err.message}\n`);
    process.exit(1);
  }
}

export function runMain(log: Logger, start: (signal: AbortSignal) => Promise<{ stop(): Promise<void> }>): void {
  const interrupted = new AbortController();
  let running: { stop(): Promise<void> } | null = null;
  let stopping = false;
  const stop = (signal: string) => {
    // Listeners stay on: a repeated signal (a terminal and tsx both forward Ctrl-C) must not kill a clean stop.
    if (stopping) return;
    stopping = true;
    if (running === null) {
      // Still starting: the start-up sees the abort, undoes what it did, and rejects.
      log.info('interrupted during start-up; stopping what was started', { signal });
      interrupted.abort(new Error(`interrupted by ${signal}`));
      // A step that does not finish (a server that hangs) must not keep the process: `exit`
      // listeners then kill the children that are left.
      setTimeout(() => {
        log.error('start-up did not stop within 60 s; exiting');
        process.exit(1);
      }, 60_000).unref();
      return;
    }
    log.info('shutting down', { signal });
    // Keeps the event loop alive while stopping, and bounds how long stopping may take.
    const deadline = setTimeout(() => {
      log.error('shutdown took longer than 60 s; exiting');
      process.exit(1);
    }, 60_000);
    running.stop().finally(() => clearTimeout(deadline)).then(
      () => {
        log.info('stopped');
        process.exitCode = 0;
      },
      (err: unknown) => {
        log.error('shutdown failed', { error: err instanceof Error ? err.message : String(err) });
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  start(interrupted.signal).then(
    async (started) => {
      running = started;
      if (interrupted.signal.aborted) {
        // The signal came after the last step checked it: stop now.
        stopping = false;
        stop('SIGINT');
      }
    },
    (err: unknown) => {
      if (interrupted.signal.aborted) {
        log.info('stopped');
        process.exitCode = 0;
      } else {
        const message = describeStartupError(err);
        log.error('start-up failed', { error: message });
        process.stderr.write(`\nStart-up failed: ${message}\n`);
        process.exitCode = 1;
      }
      // Children (embedded servers) must not keep a failed start-up alive; `exit` listeners kill what is left.
      setTimeout(() => process.exit(process.exitCode ?? 1), 2000).unref();
    },
  );
}

/** The message of a start-up failure, with what to do for the ones Node reports tersely. */
export function describeStartupError(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  if (e?.code === 'EADDRINUSE' && e.syscall === 'listen') {
    return `port ${e.port ?? '?'} is in use by another process: stop it, or set PORT (the API) to a free port`;
  }
  if (e?.code === 'EACCES' && e.syscall === 'listen') {
    return `not allowed to listen on port ${e.port ?? '?'}: choose a port above 1023 (PORT)`;
  }
  return err instanceof Error ? err.message : String(err);
}
