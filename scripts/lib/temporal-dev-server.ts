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
import { SEARCH_ATTRIBUTE_NAMES } from '../../workflows/contracts.js';

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
 *  - frontend limits raised for benchmarks.
 */
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
};

export interface DevServerOptions {
  /** SQLite file; null keeps everything in memory. */
  dbFile: string | null;
  port: number;
  /** Web UI port; null disables the UI. @default port + 1000 */
  uiPort?: number | null;
  namespace?: string;
  onLog?: (line: string) => void;
}

export interface RunningDevServer {
  address: string;
  uiUrl: string | null;
  process: ChildProcess;
  stop(): Promise<void>;
}

function waitForPort(port: number, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`temporal dev server exited with code ${child.exitCode}`));
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`temporal dev server did not listen on ${port} within ${timeoutMs} ms`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

export async function startTemporalDevServer(options: DevServerOptions): Promise<RunningDevServer> {
  if (!existsSync(TEMPORAL_CLI)) {
    throw new Error(`Temporal CLI not found at ${TEMPORAL_CLI}: run "npm run setup:temporal" (scripts/install-temporal.sh)`);
  }
  const uiPort = options.uiPort === undefined ? options.port + 1000 : options.uiPort;
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(options.port), '--log-level', 'warn'];
  if (options.dbFile !== null) {
    await fs.mkdir(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
    // WAL with synchronous=NORMAL: a commit survives the process being killed (what a restart
    // needs) without an fsync per history event, which made every request ~0.5 s slower here.
    args.push('--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal');
  }
  if (uiPort === null) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  if (options.namespace && options.namespace !== 'default') args.push('--namespace', options.namespace);
  for (const name of SEARCH_ATTRIBUTE_NAMES) args.push('--search-attribute', `${name}=Keyword`);
  for (const [key, value] of Object.entries(DEV_SERVER_DYNAMIC_CONFIG)) args.push('--dynamic-config-value', `${key}=${value}`);
  const child = spawn(TEMPORAL_CLI, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const forward = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) if (line.trim()) options.onLog?.(line);
  };
  child.stdout?.on('data', forward);
  child.stderr?.on('data', forward);
  await waitForPort(options.port, 60_000, child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    address: `127.0.0.1:${options.port}`,
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
