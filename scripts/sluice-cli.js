#!/usr/bin/env node
/**
 * The `sluice` bin: runs scripts/sluice.ts under tsx in a child Node process, forwarding the
 * arguments, stdio, termination signals and the exit code. tsx is resolved from this package, so
 * the command works from any working directory.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const script = fileURLToPath(new URL('./sluice.ts', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

const child = spawn(process.execPath, ['--import', tsx, script, ...process.argv.slice(2)], { stdio: 'inherit' });

// Ctrl-C reaches the child through the terminal's process group; a signal sent to this process
// alone is passed on. Either way this process waits for the child and exits as it did.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}

child.on('error', (err) => {
  process.stderr.write(`sluice: could not start ${process.execPath}: ${err.message}\n`);
  process.exitCode = 1;
});

child.on('exit', (code, signal) => {
  process.exitCode = signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1);
});
