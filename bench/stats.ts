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

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ: 100 on every Linux this runs on). */
const TICKS_PER_S = 100;

/** The CPU fields of /proc/<pid>/stat, in ms: the process's own (utime + stime) and its reaped children's (cutime + cstime). */
function procTimes(pid: number): { own: number; reaped: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // After the command (which may hold spaces and parentheses): state is field 3, utime field 14.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ms = (i: number) => (Number(fields[i]) * 1000) / TICKS_PER_S;
  return { own: ms(11) + ms(12), reaped: ms(13) + ms(14) };
}

/** CPU time (user + system) a process has used so far, in ms (null when it cannot be read). */
export function cpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    return procTimes(pid).own;
  } catch {
    return null;
  }
}

/**
 * CPU ms of the embedded PostgreSQL in `dataDir` so far, counted so that it only grows: the
 * postmaster's own, that of every child it has reaped (its `cutime + cstime`: a backend that
 * exited, when a pool replaced a connection, or an autovacuum worker), and that of its live
 * children. Summing the live processes alone lost an exited backend's whole CPU (one base round
 * read −36 ms per request). The children are read before the postmaster, so a child reaped in
 * between is counted twice (at most its own CPU), never lost.
 */
export function postgresCpuMs(dataDir: string | undefined): number | null {
  if (dataDir === undefined) return null;
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    let live = 0;
    for (const child of children) {
      try {
        const t = procTimes(child);
        live += t.own + t.reaped;
      } catch {
        // exited and reaped meanwhile: counted in the postmaster's reaped time below
      }
    }
    const postmaster = procTimes(pid);
    return postmaster.own + postmaster.reaped + live;
  } catch {
    return null;
  }
}

/**
 * CPU ms spent between two readings of a counter that only grows (`cpuMs`, `postgresCpuMs`); null
 * when either is missing or the second is below the first (a process restarted, or a reading
 * that lost a process): not measured, never a negative cost.
 */
export function cpuSpent(before: number | null, after: number | null): number | null {
  if (before === null || after === null || after < before) return null;
  return after - before;
}

/** `ms` per unit over `units`, rounded to `decimals`; null when nothing was measured or no unit was done (not a division by zero). */
export function perUnit(ms: number | null, units: number, decimals = 1): number | null {
  if (ms === null || !(units > 0)) return null;
  const scale = 10 ** decimals;
  return Math.round((ms / units) * scale) / scale;
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
   * here: `load_generator` absent), of the Temporal dev server, of PostgreSQL and of the load
   * generator's own process when it has one (`bench/load-client.ts`); null: not measured, or no
   * request succeeded (`perUnit`).
   */
  cpu_ms_per_request: { node: number | null; temporal: number | null; postgres?: number | null; load_generator?: number | null };
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
  const per = (ms: number | null) => perUnit(ms, latencies.length);
  return {
    concurrency, requests: latencies.length, errors, rps: Math.round((latencies.length / elapsedS) * 10) / 10,
    p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99),
    cpu_ms_per_request: {
      node: per((node.user + node.system) / 1000), temporal: per(cpuSpent(temporal0, temporal1)),
      ...(pgDir !== undefined ? { postgres: per(cpuSpent(pg0, pg1)) } : {}),
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
