/** Statistics and measurements (process CPU and memory, a closed-loop load) shared by the benchmarks. */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** The p-th percentile (nearest rank) of a sample, rounded to 0.01. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round((sorted[rank] as number) * 100) / 100;
}


/** Peak resident set (VmHWM) of a process, in MiB (null when it cannot be read). */
export function peakRssMib(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** CPU time (user + system) a process has used so far, in ms (null when it cannot be read). */
export function cpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in 1/100 s ticks
  } catch {
    return null;
  }
}

/** CPU ms of the embedded PostgreSQL in `dataDir`: the postmaster and its live children (the pool's backends stay for the run). */
export function postgresCpuMs(dataDir: string | undefined): number | null {
  if (dataDir === undefined) return null;
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    return [pid, ...children].reduce((sum, p) => sum + (cpuMs(p) ?? 0), 0);
  } catch {
    return null;
  }
}

/** The processes whose CPU a load is charged with besides this one: the Temporal dev server, PostgreSQL (its data dir). */
export interface LoadPids {
  temporalPid: number | undefined;
  /** The embedded PostgreSQL's data dir (`<SLUICE_DATA_DIR>/postgres`); none: no PostgreSQL column. */
  pgDir?: string;
}

export interface Load {
  concurrency: number;
  requests: number;
  /** Calls that failed (not counted in requests). */
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /**
   * CPU time per request of this process (API and workers, and the load generator when it runs
   * here: `load_generator` absent), of the Temporal dev server, of PostgreSQL (null: not measured)
   * and of the load generator's own process when it has one (`bench/load-client.ts`).
   */
  cpu_ms_per_request: { node: number; temporal: number | null; postgres?: number | null; load_generator?: number };
  /**
   * When the measurement ran, in µs of the monotonic clock (`process.hrtime`, the clock of a
   * `.cpuprofile`'s `startTime`): `bench/profile-summary.ts --window FROM,TO` cuts a profile to it.
   */
  window_us: [number, number];
}

/** Now on the monotonic clock, µs (the clock V8's CPU profiles are stamped with). */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Runs `call` from `concurrency` loops for `seconds`, with the CPU both processes spent per call. */
export async function measureLoad(call: () => Promise<number>, concurrency: number, seconds: number, temporalPid: number | undefined, pgDir?: string): Promise<Load> {
  const latencies: number[] = [];
  let errors = 0;
  const node0 = process.cpuUsage();
  const temporal0 = cpuMs(temporalPid);
  const pg0 = postgresCpuMs(pgDir);
  const from = monotonicUs();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) {
      try {
        latencies.push(await call());
      } catch {
        errors += 1;
      }
    }
  }));
  // Calls started before the deadline finish after it: the rate is over the time they all took
  // (with `seconds` alone, long calls at a high concurrency counted as if done within it).
  const elapsedS = (performance.now() - started) / 1000;
  const to = monotonicUs();
  const node = process.cpuUsage(node0);
  const temporal1 = cpuMs(temporalPid);
  const pg1 = postgresCpuMs(pgDir);
  const per = (ms: number) => Math.round((ms / latencies.length) * 10) / 10;
  return {
    concurrency, requests: latencies.length, errors, rps: Math.round((latencies.length / elapsedS) * 10) / 10,
    p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99),
    cpu_ms_per_request: {
      node: per((node.user + node.system) / 1000), temporal: temporal0 !== null && temporal1 !== null ? per(temporal1 - temporal0) : null,
      ...(pgDir !== undefined ? { postgres: pg0 !== null && pg1 !== null ? per(pg1 - pg0) : null } : {}),
    },
    window_us: [from, to],
  };
}

/** Fields of /proc/<pid>/status in kB (VmRSS, VmHWM, RssAnon, …); null when the process is gone. */
export function procStatus(pid: number): Record<string, number> | null {
  try {
    const out: Record<string, number> = {};
    for (const m of readFileSync(`/proc/${pid}/status`, 'utf8').matchAll(/^(\w+):\s+(\d+) kB$/gm)) out[m[1] as string] = Number(m[2]);
    return out;
  } catch {
    return null;
  }
}

/** Proportional set size of a process in kB (shared pages divided among their users); null when unreadable. */
export function pssKb(pid: number): number | null {
  try {
    const m = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The pids whose parent is `ppid`. */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Least-squares slope (per minute) of y over t (seconds), with its standard error and the residuals' SD. */
export function regression(points: ReadonlyArray<{ t_s: number; y: number }>): { slope_per_min: number; se: number; residual_sd: number } {
  const n = points.length;
  if (n < 3) return { slope_per_min: Number.NaN, se: Number.NaN, residual_sd: Number.NaN };
  const xs = points.map((p) => p.t_s / 60);
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  points.forEach((p, i) => {
    sxx += ((xs[i] as number) - mx) ** 2;
    sxy += ((xs[i] as number) - mx) * (p.y - my);
  });
  const slope = sxy / sxx;
  const sse = points.reduce((a, p, i) => a + (p.y - (my + slope * ((xs[i] as number) - mx))) ** 2, 0);
  const residualSd = Math.sqrt(sse / (n - 2));
  return { slope_per_min: slope, se: residualSd / Math.sqrt(sxx), residual_sd: residualSd };
}
