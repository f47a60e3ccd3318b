/** Runs an entry point: starts it, stops it once on SIGINT/SIGTERM, exits non-zero if start-up fails. */
import type { Logger } from '../../workers/logger.js';

export function runMain(log: Logger, start: () => Promise<{ stop(): Promise<void> }>): void {
  let stopping = false;
  start().then(
    (running) => {
      const stop = (signal: string) => {
        // Listeners stay on: a repeated signal (a terminal and tsx both forward Ctrl-C) must not kill a clean stop.
        if (stopping) return;
        stopping = true;
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
    },
    (err: unknown) => {
      log.error('start-up failed', { error: err instanceof Error ? err.message : String(err) });
      process.exitCode = 1;
      // Children (embedded servers) must not keep a failed start-up alive.
      setTimeout(() => process.exit(1), 2000).unref();
    },
  );
}
