/**
 * `sluice`, the operator CLI: the entry point (`npm run sluice`, and the `bin` through
 * `sluice-cli.js`). The commands live in `scripts/cli/` (see its index.ts); this file only wires
 * them to the process: argv, the environment, stdout/stderr and the exit code. Importing it runs
 * nothing.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { cli } from './cli/index.js';

export { cli, formatMicros, parseCommand, runCommand, DEFAULT_URL, type Action, type CliDeps, type Command, type Connection, type ParseResult } from './cli/index.js';

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // `sluice … | head` closes the pipe early; that is not an error of the command.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
  cli(process.argv.slice(2), process.env, {
    fetch: globalThis.fetch,
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    progress: process.stderr.isTTY ? process.stderr : null,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`sluice: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
