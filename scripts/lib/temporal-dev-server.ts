/**
 * The Temporal CLI's dev server, persisted to a SQLite file so workflows survive restarts,
 * with Sluice's search attributes registered at start. The CLI is installed into
 * `.tools/bin/temporal` by `scripts/install-temporal.sh`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_NAMES } from '../../contracts/ids.js';
import { freePort } from './free-port.js';

export const TEMPORAL_CLI = fileURLToPath(new URL('../../.tools/bin/temporal', import.meta.url));

/**
 * Dynamic config of the dev server (docker-compose's `temporal/dynamicconfig.yaml` carries the same).
 * Measured with an empty workflow and a one-activity workflow (bench/BENCHMARKS.md):
 *  - history queue readers are rate limited to 20 reads/s per shard by default, so every task that
 *    history hands to matching (each workflow task, each activity) waited up to 50 ms: an empty
 *    workflow took 50 ms, one activity on another queue 150 ms; at 1000 reads/s: 20 and 36 ms;
 *  - one task-queue partition: on a single host more partitions only add forwarding, and priority
 *    (sync 1, async 2, batch 3) is strict only within a partition;
 *  - task-queue priority and per-tenant fairness need the new matcher;
 *  - frontend limits raised for benchmarks;
 *  - the history service's mutable-state cache capped at {@link DEV_SERVER_MUTABLE_STATE_CACHE}
 *    entries (see there): by default it keeps up to 128,000 workflows for an hour, so a sync load
 *    grew the dev server by ~40 MiB per 1,000 requests (BENCHMARKS.md, the 10-minute soak);
 *  - the search-attribute cache on (the CLI turns it off): see the key's comment.
 */
/**
 * Workflows whose mutable state the dev server's history service keeps in memory
 * (`history.hostLevelCacheMaxSize`; Server 1.32 has only this host-level cache, the per-shard
 * `history.cacheMaxSize` is gone and was silently ignored). An entry holds a workflow's mutable
 * state whether it runs or has closed, until the cap or its 1-hour TTL evicts it; a closed chat
 * request's entry measured ~40 KiB (bench/soak.ts), so this caps the cache near 40 MiB. A miss is
 * a read from SQLite, not an error; only entries in use are pinned (the server answers
 * ResourceExhausted, which clients retry, when all 1,000 are in use at once). The control worker
 * caches as many workflows (`maxCachedWorkflows`), so open workflows beyond this do not stay hot
 * on the worker either.
 */
export const DEV_SERVER_MUTABLE_STATE_CACHE = 1000;

export const DEV_SERVER_DYNAMIC_CONFIG: Record<string, string | number | boolean> = {
  'history.transferProcessorMaxPollRPS': 1000,
  'history.transferProcessorMaxPollHostRPS': 10000,
  'history.timerProcessorMaxPollRPS': 1000,
  'history.timerProcessorMaxPollHostRPS': 10000,
  'history.visibilityProcessorMaxPollRPS': 1000,
  'history.visibilityProcessorMaxPollHostRPS': 10000,
  'matching.numTaskqueueReadPartitions': 1,
  'matching.numTaskqueueWritePartitions': 1,
  'matching.useNewMatcher': true,
  'matching.enableFairness': true,
  'frontend.rps': 20000,
  'frontend.namespaceRPS': 20000,
  'history.hostLevelCacheMaxSize': DEV_SERVER_MUTABLE_STATE_CACHE,
  // The CLI's dev server sets this to true unless told otherwise (temporalio/cli
  // `defaultDynamicConfigValues`: search attributes created at run time usable at once), so every
  // read of the search-attribute map (a start, an upsert, a close, a visibility write) went to
  // SQLite: 12 `GetCurrentClusterMetadata` and 4 `GetNamespace` per Sluice sync request, half the
  // dev server's persistence calls per request; 6 and 1 for a workflow with no attributes of its
  // own; none with this (bench/round-trips.ts, bench/floor-decompose.ts; BENCHMARKS.md). Sluice
  // registers its attributes when the server starts (`--search-attribute`: written to the
  // database before it serves), so the server's cache holds them from its first read; a real
  // Temporal server (`npm run cluster`, docker-compose) defaults to false as well.
  // `temporal operator search-attribute create` on a running dev server now takes effect when the
  // cache next refreshes, as on a real server.
  'system.forceSearchAttributesCacheRefreshOnRead': false,
};

export interface DevServerOptions {
  /** SQLite file; null keeps everything in memory. */
  dbFile: string | null;
  /** Frontend port; when omitted, a free one, picked again for each start attempt. */
  port?: number;
  /** Web UI port; null disables the UI. @default port + 1000 */
  uiPort?: number | null;
  namespace?: string;
  onLog?: (line: string) => void;
  /** Aborting stops a start-up in progress: the child is killed and the start rejects. */
  signal?: AbortSignal;
  /**
   * More arguments for `temporal server start-dev`, after ours (benchmarks: `--metrics-port`, a
   * `--dynamic-config-value` to try). @default []
   */
  extraArgs?: readonly string[];
}

export interface RunningDevServer {
  address: string;
  uiUrl: string | null;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Thrown when the port the dev server should take is already held by another process. */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
}

/**
 * Refuses a port another process holds (listening, or bound on any address), so that start-up
 * never mistakes a stale or foreign server on that port for the child it is about to spawn.
 */
export async function assertPortFree(port: number, what = 'port'): Promise<void> {
  const taken = () => new PortInUseError(
    `${what} ${port} is in use by another process (a Temporal server left from an earlier start?); `
    + `stop it, or set SLUICE_TEMPORAL_PORT to a free port (the UI takes that port + 1000), or TEMPORAL_ADDRESS to use an existing Temporal server`,
  );
  if (await accepts(port)) throw taken();
  await new Promise<void>((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? taken() : err));
    probe.listen({ port, host: '127.0.0.1', exclusive: true }, () => probe.close(() => resolve()));
  });
}

/**
 * Whether the TCP socket listening on `port` belongs to process `pid`, from `/proc` (Linux):
 * the listening socket's inode among the process's open files. Null where `/proc` cannot tell
 * (another OS, or no access), so callers fall back to weaker evidence.
 */
export async function listensOn(pid: number, port: number): Promise<boolean | null> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let readable = false;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await fs.readFile(table, 'utf8').catch(() => null);
    if (text === null) continue;
    readable = true;
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; state 0A is LISTEN; column 9 is the inode.
      if (cols[1]?.endsWith(`:${hexPort}`) && cols[3] === '0A' && cols[9]) inodes.add(cols[9]);
    }
  }
  if (!readable) return null;
  const fds = await fs.readdir(`/proc/${pid}/fd`).catch(() => null);
  if (fds === null) return null;
  for (const fd of fds) {
    const target = await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode && inodes.has(inode)) return true;
  }
  return false;
}

const alive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/**
 * Waits until the child itself answers as a Temporal frontend on `port`: it is alive, a Temporal
 * frontend answers on the port, and (where `/proc` tells) the listening socket is the child's.
 * Rejects when the child exits first, with its output, or when `signal` aborts.
 */
async function waitForFrontend(port: number, timeoutMs: number, child: ChildProcess, logTail: () => string, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (signal?.aborted) {
      child.kill('SIGKILL');
      throw new Error('start-up was interrupted');
    }
    if (!alive(child)) {
      throw new DevServerExited(`temporal dev server exited with ${child.exitCode ?? child.signalCode} during start-up; its last output:\n${logTail()}`);
    }
    if (await answersAsTemporal(port)) {
      const own = child.pid === undefined ? null : await listensOn(child.pid, port);
      // Checked after the answer: the answer may have come from another process on the port.
      if (alive(child) && own !== false) return;
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`temporal dev server did not answer on ${port} within ${timeoutMs} ms; its last output:\n${logTail()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function answersAsTemporal(port: number): Promise<boolean> {
  // A plain connect first: cheap while nothing listens yet, where a client would wait for its timeout.
  if (!(await accepts(port))) return false;
  try {
    const connection = await Connection.connect({ address: `127.0.0.1:${port}`, connectTimeout: 2_000 });
    try {
      await connection.workflowService.getSystemInfo({});
      return true;
    } finally {
      await connection.close();
    }
  } catch {
    return false;
  }
}

class DevServerExited extends Error {}

/**
 * Start attempts. The dev server binds its frontend port and picks free ports for its internal
 * services, HTTP API and metrics; when another process takes one of those between the pick and
 * the bind, it dies during start-up (seen once in CI as exit code 2, with many servers starting on
 * one machine). A new attempt picks new internal ports, and a new frontend port unless it was given.
 */
const START_ATTEMPTS = 3;

async function spawnListening(
  argsFor: (port: number) => string[],
  uiPortOf: (port: number) => number | null,
  options: DevServerOptions,
): Promise<{ child: ChildProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    options.signal?.throwIfAborted();
    await assertPortFree(port);
    const uiPort = uiPortOf(port);
    if (uiPort !== null) await assertPortFree(uiPort, 'the Temporal UI port');
    const tail: string[] = [];
    const started = spawn(TEMPORAL_CLI, argsFor(port), { stdio: ['ignore', 'pipe', 'pipe'] });
    // Last resort: a process that ends without stopping the server (an uncaught error, exit())
    // takes it along; a clean stop removes this again.
    const onExit = () => {
      if (alive(started)) started.kill('SIGKILL');
    };
    process.once('exit', onExit);
    started.once('exit', () => process.removeListener('exit', onExit));
    const forward = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        options.onLog?.(line);
      }
    };
    started.stdout?.on('data', forward);
    started.stderr?.on('data', forward);
    try {
      await waitForFrontend(port, 60_000, started, () => tail.join('\n'), options.signal);
      return { child: started, port };
    } catch (error) {
      if (!(error instanceof DevServerExited) || attempt >= START_ATTEMPTS) throw error;
      options.onLog?.(`${(error as Error).message}\n(start attempt ${attempt} of ${START_ATTEMPTS} failed; retrying)`);
    }
  }
}

export async function startTemporalDevServer(options: DevServerOptions): Promise<RunningDevServer> {
  if (!existsSync(TEMPORAL_CLI)) {
    throw new Error(`Temporal CLI not found at ${TEMPORAL_CLI}: run "npm run setup:temporal" (scripts/install-temporal.sh)`);
  }
  if (options.dbFile !== null) await fs.mkdir(path.dirname(options.dbFile), { recursive: true });
  const uiPortFor = (port: number) => (options.uiPort === undefined ? port + 1000 : options.uiPort);
  const argsFor = (port: number) => {
    const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'warn'];
    if (options.dbFile !== null) {
      args.push('--db-filename', options.dbFile);
      // WAL with synchronous=NORMAL: a commit survives the process being killed (what a restart
      // needs) without an fsync per history event, which made every request ~0.5 s slower here.
      args.push('--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal');
    }
    const uiPort = uiPortFor(port);
    if (uiPort === null) args.push('--headless');
    else args.push('--ui-port', String(uiPort));
    if (options.namespace && options.namespace !== 'default') args.push('--namespace', options.namespace);
    for (const name of SEARCH_ATTRIBUTE_NAMES) args.push('--search-attribute', `${name}=Keyword`);
    // A `--dynamic-config-value` of the extra arguments replaces ours for its key (a benchmark trying another value).
    const extra = options.extraArgs ?? [];
    const overridden = new Set(extra.flatMap((a, i) => (extra[i - 1] === '--dynamic-config-value' ? [a.split('=')[0]] : [])));
    for (const [key, value] of Object.entries(DEV_SERVER_DYNAMIC_CONFIG)) if (!overridden.has(key)) args.push('--dynamic-config-value', `${key}=${value}`);
    args.push(...extra);
    return args;
  };
  const { child, port } = await spawnListening(argsFor, uiPortFor, options);
  const uiPort = uiPortFor(port);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    address: `127.0.0.1:${port}`,
    uiUrl: uiPort === null ? null : `http://localhost:${uiPort}`,
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
