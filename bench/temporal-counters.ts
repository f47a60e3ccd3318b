/**
 * The Temporal dev server's own counts, from its Prometheus metrics (`--metrics-port`): its
 * persistence calls by operation, its history tasks by type and matching's task dispatches
 * (sync and all). Deterministic per workflow where timings are not: what a change saves the server.
 */

/** The counters summed over their other labels: `persistence_requests:<operation>`, `task_requests:<task>`, `poll_success`, `poll_success_sync`. */
export async function temporalCounters(metricsUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^(persistence_requests|poll_success_sync|poll_success|visibility_persistence_requests|task_requests)\{([^}]*)\} ([0-9.e+]+)$/.exec(line);
    if (!m) continue;
    const op = /operation="([^"]+)"/.exec(m[2] as string)?.[1];
    const key = m[1] === 'poll_success' || m[1] === 'poll_success_sync' ? (m[1] as string) : `${m[1]}:${op ?? '?'}`;
    out[key] = (out[key] ?? 0) + Number(m[3]);
  }
  return out;
}

/** `after − before` per unit (request, workflow), the counters that moved only, to 0.01. */
export function countersPer(before: Record<string, number>, after: Record<string, number>, units: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = (v - (before[k] ?? 0)) / units;
    if (d >= 0.005) out[k] = Math.round(d * 100) / 100;
  }
  return out;
}
