/**
 * The load generator in its own process: the sync benchmarks' HTTP client (`fetch`, as
 * `syncChat`), so that the CPU of the process under test (the API and the workers) no longer
 * includes the client's, and the client's is reported on its own line.
 *
 * `startLoadClient()` forks this file (`node --import tsx bench/load-client.ts`); the parent asks
 * it over the IPC channel for one-at-a-time latencies (`sequential`) or a closed-loop load of a
 * concurrency for some seconds (`load`), and reads this process's CPU for the same calls.
 * {@link measureRemoteLoad} is {@link measureLoad}'s twin with the client here.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpuMs, cpuSpent, monotonicUs, percentile, perUnit, postgresCpuMs, type Load, type LoadPids } from './stats.js';

/** One HTTP call the client repeats: a POST of `body` with `headers`, answered 200. */
export interface LoadTarget {
  url: string;
  headers: Record<string, string>;
  body: string;
}

type Command =
  | { op: 'sequential'; target: LoadTarget; n: number }
  | { op: 'load'; target: LoadTarget; concurrency: number; seconds: number };

interface Reply {
  latencies: number[];
  errors: number;
  elapsedS: number;
  /** This process's CPU (user + system) over the command, ms. */
  cpuMs: number;
}

async function callOnce(target: LoadTarget): Promise<number> {
  const t = performance.now();
  const res = await fetch(target.url, { method: 'POST', headers: target.headers, body: target.body });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
  return performance.now() - t;
}

async function runCommand(cmd: Command): Promise<Reply> {
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const latencies: number[] = [];
  let errors = 0;
  if (cmd.op === 'sequential') {
    for (let i = 0; i < cmd.n; i++) latencies.push(await callOnce(cmd.target));
  } else {
    const deadline = started + cmd.seconds * 1000;
    await Promise.all(Array.from({ length: cmd.concurrency }, async () => {
      while (performance.now() < deadline) {
        try {
          latencies.push(await callOnce(cmd.target));
        } catch {
          errors += 1;
        }
      }
    }));
  }
  const cpu = process.cpuUsage(cpu0);
  return { latencies, errors, elapsedS: (performance.now() - started) / 1000, cpuMs: (cpu.user + cpu.system) / 1000 };
}

/** The parent's handle on a forked load client. */
export interface LoadClient {
  /** `n` calls one after the other; their latencies, ms. */
  sequential(target: LoadTarget, n: number): Promise<number[]>;
  run(cmd: Command): Promise<Reply>;
  /** The client process's pid (for its CPU from /proc). */
  pid: number | undefined;
  close(): Promise<void>;
}

/** Forks the load client; `close()` ends it. */
export function startLoadClient(): LoadClient {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let pending: { resolve: (r: Reply) => void; reject: (e: Error) => void } | null = null;
  child.on('message', (m: Reply | { error: string }) => {
    const p = pending;
    pending = null;
    if ('error' in m) p?.reject(new Error(m.error));
    else p?.resolve(m);
  });
  child.once('exit', (code) => pending?.reject(new Error(`load client exited with ${code}`)));
  const run = (cmd: Command) => new Promise<Reply>((resolve, reject) => {
    if (pending) return reject(new Error('one command at a time'));
    pending = { resolve, reject };
    child.send(cmd);
  });
  return {
    run,
    sequential: async (target, n) => (await run({ op: 'sequential', target, n })).latencies,
    pid: child.pid,
    close: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.disconnect();
    }),
  };
}

/**
 * {@link measureLoad} with the calls made by the load client: the CPU of this process (`node`:
 * the API and the workers only), of the dev server, of PostgreSQL and of the client
 * (`load_generator`, its own count of its CPU), per request.
 */
export async function measureRemoteLoad(client: LoadClient, target: LoadTarget, concurrency: number, seconds: number, pids: LoadPids): Promise<Load> {
  const node0 = process.cpuUsage();
  const temporal0 = cpuMs(pids.temporalPid);
  const pg0 = postgresCpuMs(pids.pgDir);
  const from = monotonicUs();
  const r = await client.run({ op: 'load', target, concurrency, seconds });
  const to = monotonicUs();
  const node = process.cpuUsage(node0);
  const temporal1 = cpuMs(pids.temporalPid);
  const pg1 = postgresCpuMs(pids.pgDir);
  const n = r.latencies.length;
  const per = (ms: number | null) => perUnit(ms, n);
  return {
    concurrency, requests: n, errors: r.errors, rps: Math.round((n / r.elapsedS) * 10) / 10,
    p50_ms: percentile(r.latencies, 50), p99_ms: percentile(r.latencies, 99),
    cpu_ms_per_request: {
      node: per((node.user + node.system) / 1000),
      temporal: per(cpuSpent(temporal0, temporal1)),
      postgres: per(cpuSpent(pg0, pg1)),
      load_generator: per(r.cpuMs),
    },
    window_us: [from, to],
  };
}

// Forked: serve the parent's commands until it disconnects.
if (process.send !== undefined && process.argv[1] === fileURLToPath(import.meta.url)) {
  process.on('message', (cmd: Command) => {
    runCommand(cmd).then(
      (reply) => process.send?.(reply),
      (err: unknown) => process.send?.({ error: err instanceof Error ? err.message : String(err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}
