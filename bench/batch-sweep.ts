/**
 * The batch benchmark (`bench/batch.ts`) under several configurations of this checkout, alternating
 * within each round (base config, then the others, then again: this VM drifts ±2× between hours
 * and within a run), each run on its own fresh dev server and database. A run that stalls or fails
 * is reported as such (its stall report is on stderr) and the sweep goes on.
 *
 * Run: `npx tsx bench/batch-sweep.ts [--rounds 3] [--lines 10000] [--configs 512/1000,1024/2048] [--sync-probe]`
 * (each config is concurrency/lines-per-run; `npm run bench -- batch-sweep`; with `--sync-probe`,
 * another tenant's sync requests one at a time before and during each batch: `batch-sync-sweep`).
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    lines: { type: 'string', default: '10000' },
    configs: { type: 'string', default: '512/1000,1024/2048' },
    'stall-seconds': { type: 'string', default: '300' },
    'sync-probe': { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(values.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds must be a positive integer');
const CONFIGS = values.configs.split(',').map((c) => {
  const m = /^(\d+)\/(\d+)$/.exec(c.trim());
  if (!m) throw new Error(`--configs: '${c}' is not concurrency/lines-per-run`);
  const [, concurrency = '', perRun = ''] = m;
  return { name: `c${concurrency}/${perRun}`, concurrency, perRun };
});

/** One `bench/batch.ts` run: its JSON, or why it has none. */
function runOnce(concurrency: string, perRun: string): Promise<{ ok: true; result: any } | { ok: false; error: string }> {
  const args = ['--import', 'tsx', 'bench/batch.ts', '--lines', values.lines, '--concurrency', concurrency, '--per-run', perRun, '--stall-seconds', values['stall-seconds'], ...(values['sync-probe'] ? ['--sync-probe'] : [])];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => {
      if (code !== 0) return resolve({ ok: false, error: `exited with ${code}` });
      const at = out.startsWith('{\n') ? 0 : out.lastIndexOf('\n{\n') + 1;
      try {
        resolve({ ok: true, result: JSON.parse(out.slice(at)) });
      } catch {
        resolve({ ok: false, error: 'printed no JSON' });
      }
    });
  });
}

const rows: Array<{ round: number; config: string; load_before: number; error?: string; [k: string]: unknown }> = [];
for (let round = 1; round <= ROUNDS; round++) {
  for (const c of CONFIGS) {
    const load = Math.round((os.loadavg()[0] ?? 0) * 10) / 10;
    process.stderr.write(`round ${round} ${c.name} (load ${load})\n`);
    const r = await runOnce(c.concurrency, c.perRun);
    if (!r.ok) {
      rows.push({ round, config: c.name, load_before: load, error: r.error });
      continue;
    }
    const x = r.result;
    const cpu = x.cpu_ms_per_line ?? {};
    rows.push({
      round, config: c.name, load_before: load,
      status: x.status, completed: x.request_counts?.completed, failed: x.request_counts?.failed,
      lines_per_second_running: x.lines_per_second_running,
      lines_per_second_end_to_end: x.lines_per_second_end_to_end,
      cpu_ms_per_line: cpu,
      cpu_ms_per_line_total: [cpu.node_api_and_workers, cpu.temporal_dev_server, cpu.postgres].every((v) => typeof v === 'number')
        ? Math.round((cpu.node_api_and_workers + cpu.temporal_dev_server + cpu.postgres) * 100) / 100 : null,
      idle_share: x.batch_workflow_idle_share, edge_idle_share: x.batch_workflow_edge_idle_share,
      activities_open_mean: x.batch_workflow_activities_open_mean,
      runs: x.batch_workflow_runs, longest_task_ms: x.batch_workflow_longest_task_ms,
      task_problems: x.batch_workflow_task_problems,
      peak_memory_mib: x.peak_memory_mib ?? null,
      ...(x.sync_probe ? { sync_probe: x.sync_probe } : {}),
    });
  }
}

const probed = values['sync-probe'];
const lines = [
  '| round | config | load before | lines/s running | CPU per line Node / Temporal / PG (total), ms | idle share (edges) | activities open | runs / longest task |' + (probed ? ' sync p50 / p99 idle, ms | sync p50 / p99 during the batch, ms (requests, errors) |' : ''),
  '|---|---|---|---|---|---|---|---|' + (probed ? '---|---|' : ''),
];
for (const r of rows) {
  if (r.error) {
    lines.push(`| ${r.round} | ${r.config} | ${r.load_before} | **${r.error}** | | | | |` + (probed ? ' | |' : ''));
    continue;
  }
  const cpu = r.cpu_ms_per_line as Record<string, number | null>;
  const probe = r.sync_probe as { idle?: { p50_ms: number; p99_ms: number }; during_batch?: { p50_ms: number; p99_ms: number; requests: number; errors: number } } | undefined;
  lines.push(`| ${r.round} | ${r.config} | ${r.load_before} | ${r.lines_per_second_running} | ${cpu.node_api_and_workers} / ${cpu.temporal_dev_server} / ${cpu.postgres} (${r.cpu_ms_per_line_total}) | ${r.idle_share} (${r.edge_idle_share}) | ${r.activities_open_mean} | ${r.runs} / ${r.longest_task_ms} ms |` +
    (probed ? ` ${probe?.idle?.p50_ms} / ${probe?.idle?.p99_ms} | ${probe?.during_batch?.p50_ms} / ${probe?.during_batch?.p99_ms} (${probe?.during_batch?.requests}, ${probe?.during_batch?.errors}) |` : ''));
}
process.stdout.write(lines.join('\n') + '\n\n');
process.stdout.write(JSON.stringify({ machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown' }, lines: Number(values.lines), rows }, null, 2) + '\n');
