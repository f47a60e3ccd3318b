/**
 * Batch throughput through the full pipeline with the instant backend (no model time): upload an
 * N-line file, create the batch, poll until it completes. Reports lines/s (running phase and end
 * to end), Temporal history events per line (every run of the batch workflow: lines run inside
 * it), CPU time per line of this process (API + workers) and of the Temporal dev server, and peak
 * memory of both; with `--sync-probe`, the latency of another tenant's sync requests (one at a time)
 * before and while the batch runs.
 * Real embedded PostgreSQL and Temporal dev server in a temp dir; everything stops at the end.
 *
 * With 1,000,000 lines (`npm run bench -- batch-1m`) it also reports RSS per tenth of the run and
 * the disk used by PostgreSQL and the Temporal DB; the input file is written to disk and uploaded from there.
 *
 * Run: `npx tsx bench/batch.ts [--lines 10000] [--concurrency 1024] [--per-run 2048] [--chunk 256] [--sync-probe]`
 */
import fs from 'node:fs/promises';
import { createWriteStream, openAsBlob, readFileSync, readdirSync, statSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import proto from '@temporalio/proto';
import type { Db } from '../db/database.js';
import { loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { startInfra, startStack } from '../scripts/lib/system.js';
import { batchWorkflowId } from '../contracts/ids.js';
import { addInstantModel, addTenantKey, benchEnv, runBench, syncChat } from './setup.js';
import { cpuMs, cpuSpent, peakRssMib, percentile, perUnit, postgresCpuMs } from './stats.js';
import { eventMs } from './instrument.js';

const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '10000' }, concurrency: { type: 'string', default: '1024' }, 'per-run': { type: 'string', default: '2048' }, chunk: { type: 'string', default: '256' },
    /** Also send sync requests of another tenant, one at a time, before and while the batch runs. */
    'sync-probe': { type: 'boolean', default: false },
    /** No line done for this long: print the batch workflow's state (its pending activities, its last events) and fail. */
    'stall-seconds': { type: 'string', default: '300' },
  },
});
const LINES = Number(values.lines);
/** A line is ~170 bytes; the file limits are raised to fit whatever `--lines` asks for. */
const FILE_MAX_BYTES = Math.max(200 * 1024 * 1024, LINES * 256);

/** Resident set (VmRSS) of a process now, in MiB (null when it cannot be read). */
function rssMib(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** Bytes under a path (a file or a directory tree). */
function diskBytes(p: string): number {
  try {
    const st = statSync(p);
    if (!st.isDirectory()) return st.size;
    return readdirSync(p).reduce((sum, name) => sum + diskBytes(path.join(p, name)), 0);
  } catch {
    return 0;
  }
}

/**
 * PostgreSQL's own counters for the database (`pg_stat_database`: transactions committed, rows
 * written and read) and rows written and read per table (`pg_stat_user_tables`). The statistics are
 * flushed by each backend at most once a second, so a reading right after the run is a lower bound.
 */
async function pgCounters(db: Db): Promise<Record<string, number>> {
  const row = (await sql<Record<string, string>>`select xact_commit, tup_inserted, tup_updated, tup_deleted, tup_fetched from pg_stat_database where datname = current_database()`.execute(db)).rows[0] ?? {};
  const tables = (await sql<{ relname: string; written: string; seq_read: string; idx_read: string }>`
    select relname, n_tup_ins + n_tup_upd + n_tup_del as written, coalesce(seq_tup_read, 0) as seq_read, coalesce(idx_tup_fetch, 0) as idx_read
    from pg_stat_user_tables`.execute(db)).rows;
  return {
    ...Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)])),
    ...Object.fromEntries(tables.map((t) => [`rows_written:${t.relname}`, Number(t.written)])),
    // Rows read by sequential scans and fetched by index scans, per table: where `tup_fetched` goes.
    ...Object.fromEntries(tables.flatMap((t) => [[`rows_seq_read:${t.relname}`, Number(t.seq_read)], [`rows_idx_fetched:${t.relname}`, Number(t.idx_read)]])),
  };
}

/**
 * Time spent in each PL/pgSQL function (`pg_stat_user_functions`, `track_functions = 'pl'`, set
 * for the run by `trackFunctions`): calls, and self and total ms, the functions' share of
 * PostgreSQL's work (the statements around them are not counted).
 */
async function pgFunctions(db: Db): Promise<Record<string, number>> {
  const rows = (await sql<{ funcname: string; calls: string; self_time: number; total_time: number }>`
    select funcname, calls, self_time, total_time from pg_stat_user_functions`.execute(db)).rows;
  return Object.fromEntries(rows.flatMap((r) => [[`${r.funcname}:calls`, Number(r.calls)], [`${r.funcname}:self_us`, r.self_time * 1000], [`${r.funcname}:total_us`, r.total_time * 1000]]));
}

async function trackFunctions(db: Db): Promise<void> {
  await sql`alter system set track_functions = 'pl'`.execute(db);
  await sql`select pg_reload_conf()`.execute(db);
}

/** Per line, the counters' growth over the run (only what grew). */
function perLine(before: Record<string, number>, after: Record<string, number>, lines: number): Record<string, number> {
  return Object.fromEntries(Object.entries(after).flatMap(([k, v]) => {
    const d = v - (before[k] ?? 0);
    return d > 0 ? [[k, Math.round((d / lines) * 100) / 100]] : [];
  }));
}

// A CommonJS package: its namespace through the default export under tsx's ESM loader.
const { temporal } = proto;
type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

/** An event's time in whole ms (server clock). */
const wholeMs = (e: HistoryEvent): number => Math.floor(eventMs(e));

/**
 * Where a run's wall time goes (server clock, a diagnostic, not a count): its length, the time
 * with no activity scheduled and unclosed (nothing for the workers to do: workflow tasks, the
 * start and the drain), and the activities open on average (the pipeline's depth); adds each
 * activity type's input and result bytes to `payloadBytes`.
 */
function runShape(events: readonly HistoryEvent[], payloadBytes: Record<string, number>): { wallMs: number; idleMs: number; edgeIdleMs: number; openMsSum: number; longestTaskMs: number } {
  if (events.length === 0) return { wallMs: 0, idleMs: 0, edgeIdleMs: 0, openMsSum: 0, longestTaskMs: 0 };
  const start = wholeMs(events[0] as HistoryEvent);
  const end = wholeMs(events[events.length - 1] as HistoryEvent);
  const scheduled = new Map<string, { at: number; type: string }>();
  const intervals: Array<[number, number]> = [];
  const bytesOf = (payloads: proto.temporal.api.common.v1.IPayloads | null | undefined) => (payloads?.payloads ?? []).reduce((n, p) => n + (p.data?.length ?? 0), 0);
  const taskStarted = new Map<string, number>();
  let longestTaskMs = 0;
  for (const e of events) {
    // Workflow tasks, started → completed (server clock): an activation's length, which the worker aborts past 5 s.
    if (e.workflowTaskStartedEventAttributes) taskStarted.set(String(e.eventId), wholeMs(e));
    const done = e.workflowTaskCompletedEventAttributes;
    if (done?.startedEventId != null) {
      const from = taskStarted.get(String(done.startedEventId));
      if (from !== undefined) longestTaskMs = Math.max(longestTaskMs, wholeMs(e) - from);
    }
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      const type = s.activityType?.name ?? '?';
      scheduled.set(String(e.eventId), { at: wholeMs(e), type });
      payloadBytes[`${type}:input`] = (payloadBytes[`${type}:input`] ?? 0) + bytesOf(s.input);
    }
    const closed = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? e.activityTaskCanceledEventAttributes;
    if (closed?.scheduledEventId != null) {
      const from = scheduled.get(String(closed.scheduledEventId));
      if (from !== undefined) {
        intervals.push([from.at, wholeMs(e)]);
        const result = e.activityTaskCompletedEventAttributes?.result;
        if (result) payloadBytes[`${from.type}:result`] = (payloadBytes[`${from.type}:result`] ?? 0) + bytesOf(result);
      }
    }
  }
  intervals.sort((a, b) => a[0] - b[0]);
  let covered = 0;
  let openMsSum = 0;
  let cur: [number, number] | null = null;
  for (const [a, b] of intervals) {
    openMsSum += b - a;
    if (cur && a <= cur[1]) cur[1] = Math.max(cur[1], b);
    else {
      if (cur) covered += cur[1] - cur[0];
      cur = [a, b];
    }
  }
  if (cur) covered += cur[1] - cur[0];
  // Idle before the run's first activity and after its last one: the run's start and end.
  const first = intervals[0]?.[0] ?? end;
  const last = intervals.reduce((m, [, b]) => Math.max(m, b), start);
  return { wallMs: end - start, idleMs: end - start - covered, edgeIdleMs: Math.max(0, first - start) + Math.max(0, end - last), openMsSum, longestTaskMs };
}

/** What a stalled batch's open run is doing: its pending activities and its last history events. */
async function stallReport(client: Awaited<ReturnType<typeof startStack>>['client'], workflowId: string): Promise<string> {
  try {
    const handle = client.workflow.getHandle(workflowId);
    const d = await handle.describe();
    const raw = d.raw;
    const pending = (raw.pendingActivities ?? []).map((a) => ({
      type: a.activityType?.name, state: a.state, attempt: a.attempt, lastFailure: a.lastFailure?.message,
      scheduled: a.scheduledTime?.seconds?.toString(), lastStarted: a.lastStartedTime?.seconds?.toString(), lastHeartbeat: a.lastHeartbeatTime?.seconds?.toString(),
    }));
    const history = await handle.fetchHistory();
    const events = (history.events ?? []).slice(-12).map((e) => `${e.eventId?.toString()} ${temporal.api.enums.v1.EventType[e.eventType ?? 0]} ${e.eventTime?.seconds?.toString()}`);
    return JSON.stringify({ runId: d.runId, status: d.status.name, historyLength: d.historyLength, pendingWorkflowTask: raw.pendingWorkflowTask ?? null, pending, lastEvents: events }, null, 2);
  } catch (err) {
    return `(no state: ${(err as Error).message})`;
  }
}

async function main() {
  const { dir, env } = await benchEnv('batch', {
    SLUICE_SLOTS: '64', SLUICE_FILE_MAX_LINES: String(Math.max(50_000, LINES)), SLUICE_FILE_MAX_BYTES: String(FILE_MAX_BYTES),
    SLUICE_BATCH_CONCURRENCY: String(values.concurrency), SLUICE_BATCH_LINES_PER_RUN: String(values['per-run']), SLUICE_BATCH_CHUNK_LINES: String(values.chunk),
  });
  const log = createLogger('warn');
  const config = loadConfig(env);
  const infra = await startInfra(config, log);
  const stack = await startStack(config, { databaseUrl: infra.databaseUrl, temporalAddress: infra.temporalAddress, api: true, control: true, pools: ['bench'], log });
  let peakHeap = 0;
  let peakRss = 0;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakHeap = Math.max(peakHeap, m.heapUsed);
    peakRss = Math.max(peakRss, m.rss);
  }, 250);
  try {
    await addInstantModel(stack.db);
    const key = (await addTenantKey(stack.db)).secret;
    const url = stack.url as string;
    // A sync caller of another tenant: its latency with nothing else running, then while the batch runs.
    const probe = values['sync-probe'] ? { key: (await addTenantKey(stack.db, null, 'bench-sync')).secret, idle: [] as number[], during: [] as number[], errors: 0 } : null;
    if (probe) {
      for (let i = 0; i < 20; i++) await syncChat(url, probe.key);
      for (let i = 0; i < 100; i++) probe.idle.push(await syncChat(url, probe.key));
    }
    const auth = { Authorization: `Bearer ${key}` };

    // Written to disk and uploaded from there: a 1,000,000-line file (~170 MB) never sits in this process's heap.
    const inputPath = path.join(dir, 'bench-input.jsonl');
    const out = createWriteStream(inputPath);
    for (let i = 0; i < LINES; i++) {
      const line = JSON.stringify({ custom_id: `line-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'instant', messages: [{ role: 'user', content: `benchmark line ${i}` }], max_tokens: 2 } }) + '\n';
      if (!out.write(line)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    const t0 = performance.now();
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', await openAsBlob(inputPath), 'bench.jsonl');
    const file = (await (await fetch(`${url}/v1/files`, { method: 'POST', headers: auth, body: form })).json()) as { id: string };
    const tUploaded = performance.now();
    const created = (await (await fetch(`${url}/v1/batches`, {
      method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' }),
    })).json()) as { id: string };
    let batch: any;
    let tRunning: number | null = null;
    const temporalPid = infra.temporal?.process.pid;
    const pgDir = path.join(dir, 'postgres');
    await trackFunctions(stack.db);
    const pgAtStart = { ...await pgCounters(stack.db), ...await pgFunctions(stack.db) };
    const cpuAtStart = { node: process.cpuUsage(), temporal: cpuMs(temporalPid), postgres: postgresCpuMs(pgDir) };
    /** RSS of this process and of the Temporal dev server over the run, by lines completed. */
    const samples: Array<{ completed: number; node: number; temporal: number | null }> = [];
    let lastLog = 0;
    let batchDone = false;
    const stallMs = Number(values['stall-seconds']) * 1000;
    let lastDone = -1;
    let lastProgressAt = performance.now();
    const probing = probe
      ? (async () => {
        while (!batchDone) {
          try {
            probe.during.push(await syncChat(url, probe.key));
          } catch {
            probe.errors += 1; // reported with the results: a refused sync request is a finding, not a crash
          }
        }
      })()
      : null;
    for (;;) {
      batch = await (await fetch(`${url}/v1/batches/${created.id}`, { headers: auth })).json();
      if (tRunning === null && batch.status === 'in_progress') tRunning = performance.now();
      if (performance.now() - lastLog > 5000) {
        lastLog = performance.now();
        const sample = { completed: batch.request_counts.completed + batch.request_counts.failed, node: Math.round(process.memoryUsage().rss / 2 ** 20), temporal: rssMib(temporalPid) };
        if (batch.status === 'in_progress') samples.push(sample);
        const seconds = Math.round((performance.now() - t0) / 1000);
        process.stderr.write(`${new Date().toISOString()} ${seconds}s ${batch.status} ${batch.request_counts.completed}/${batch.request_counts.total} rss=${sample.node}MiB temporal_rss=${sample.temporal}MiB heap=${Math.round(process.memoryUsage().heapUsed / 2 ** 20)}MiB load=${os.loadavg().map((l) => l.toFixed(1)).join(',')}\n`);
      }
      if (['completed', 'failed', 'cancelled', 'expired'].includes(batch.status)) break;
      const done = batch.request_counts.completed + batch.request_counts.failed;
      if (done !== lastDone) {
        lastDone = done;
        lastProgressAt = performance.now();
      } else if (performance.now() - lastProgressAt > stallMs) {
        process.stderr.write(`stalled: ${batch.status}, ${done} of ${batch.request_counts.total} lines for ${values['stall-seconds']} s\n${await stallReport(stack.client, batchWorkflowId(created.id))}\n`);
        throw new Error(`batch stalled at ${done} of ${batch.request_counts.total} lines`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const tDone = performance.now();
    batchDone = true;
    await probing;
    const nodeCpu = process.cpuUsage(cpuAtStart.node);
    const temporalCpu = cpuMs(temporalPid);
    const postgresCpu = postgresCpuMs(pgDir);
    const finalizingAt = batch.finalizing_at as number;
    await new Promise((r) => setTimeout(r, 1500)); // backends flush their statistics at most once a second
    const pgPerLine = perLine(pgAtStart, { ...await pgCounters(stack.db), ...await pgFunctions(stack.db) }, LINES);
    // Every run of the batch workflow.
    let batchEvents = 0;
    let runs = 0;
    /** The runs' histories as protobuf bytes (what Temporal stores and sends): payload sizes, deterministic. */
    let historyBytes = 0;
    /** Activity payload bytes (input and result data) by activity type, over every run. */
    const payloadBytes: Record<string, number> = {};
    let runsWallMs = 0;
    let runsIdleMs = 0;
    let runsEdgeIdleMs = 0;
    let longestTaskMs = 0;
    let runsOpenMs = 0;
    // Workflow tasks that timed out or failed (each is redone by Temporal, at a cost), by kind:
    // Temporal's enum numbers (timeout type 1 = START_TO_CLOSE, 2 = SCHEDULE_TO_START; failure cause
    // as in temporal.api.enums.v1.WorkflowTaskFailedCause).
    const taskProblems: Record<string, number> = {};
    for await (const w of stack.client.workflow.list({ query: `WorkflowId = "${batchWorkflowId(created.id)}"` })) {
      batchEvents += w.historyLength;
      runs += 1;
      const history = await stack.client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
      historyBytes += temporal.api.history.v1.History.encode(history).finish().length;
      const shape = runShape(history.events ?? [], payloadBytes);
      runsWallMs += shape.wallMs;
      runsIdleMs += shape.idleMs;
      runsEdgeIdleMs += shape.edgeIdleMs;
      longestTaskMs = Math.max(longestTaskMs, shape.longestTaskMs);
      runsOpenMs += shape.openMsSum;
      for (const e of history.events ?? []) {
        const kind = e.workflowTaskTimedOutEventAttributes
          ? `timed_out:${e.workflowTaskTimedOutEventAttributes.timeoutType ?? '?'}`
          : e.workflowTaskFailedEventAttributes
            ? `failed:${e.workflowTaskFailedEventAttributes.cause ?? '?'}`
            : null;
        if (kind) taskProblems[kind] = (taskProblems[kind] ?? 0) + 1;
      }
    }
    const usage = await stack.db.selectFrom('usage').select((eb) => eb.fn.countAll<number>().as('n')).where('kind', '=', 'batch').executeTakeFirstOrThrow();
    const runningSeconds = (tDone - (tRunning ?? tUploaded)) / 1000;
    const result = {
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown' },
      lines: LINES, concurrency: Number(values.concurrency), lines_per_run: Number(values['per-run']), chunk_lines: Number(values.chunk),
      status: batch.status, request_counts: batch.request_counts, usage_rows: Number(usage.n),
      upload_seconds: Math.round((tUploaded - t0) / 10) / 100,
      total_seconds: Math.round((tDone - t0) / 10) / 100,
      lines_per_second_running: Math.round((LINES / runningSeconds) * 10) / 10,
      lines_per_second_end_to_end: Math.round((LINES / ((tDone - t0) / 1000)) * 10) / 10,
      finalize_seconds: batch.completed_at && finalizingAt ? batch.completed_at - finalizingAt : null,
      batch_workflow_runs: runs,
      batch_workflow_events_per_line: Math.round((batchEvents / LINES) * 100) / 100,
      batch_workflow_history_bytes_per_line: Math.round(historyBytes / LINES),
      batch_workflow_payload_bytes_per_line: Object.fromEntries(Object.entries(payloadBytes).sort().map(([k, v]) => [k, Math.round(v / LINES)])),
      // The runs' wall time (server clock) with no activity open, and the activities open on average.
      batch_workflow_idle_share: runsWallMs > 0 ? Math.round((runsIdleMs / runsWallMs) * 1000) / 1000 : null,
      // Of which before a run's first activity and after its last (its start and its end).
      batch_workflow_edge_idle_share: runsWallMs > 0 ? Math.round((runsEdgeIdleMs / runsWallMs) * 1000) / 1000 : null,
      batch_workflow_longest_task_ms: longestTaskMs,
      batch_workflow_wall_seconds: Math.round(runsWallMs / 100) / 10,
      batch_workflow_activities_open_mean: runsWallMs > 0 ? Math.round((runsOpenMs / runsWallMs) * 100) / 100 : null,
      batch_workflow_task_problems: taskProblems,
      cpu_ms_per_line: {
        node_api_and_workers: Math.round(((nodeCpu.user + nodeCpu.system) / 1000 / LINES) * 100) / 100,
        temporal_dev_server: perUnit(cpuSpent(cpuAtStart.temporal, temporalCpu), LINES, 2),
        postgres: perUnit(cpuSpent(cpuAtStart.postgres, postgresCpu), LINES, 2),
      },
      postgres_per_line: pgPerLine,
      // Peak RSS in each tenth of the run (by lines done), sampled every 5 s while it runs.
      rss_mib_per_tenth: Array.from({ length: 10 }, (_, k) => {
        const inTenth = samples.filter((x) => Math.min(9, Math.floor((x.completed / LINES) * 10)) === k);
        return {
          tenth: k + 1, samples: inTenth.length,
          node_max: inTenth.length ? Math.max(...inTenth.map((x) => x.node)) : null,
          temporal_max: inTenth.length ? Math.max(...inTenth.map((x) => x.temporal ?? 0)) : null,
        };
      }),
      disk_mib: { postgres: Math.round(diskBytes(pgDir) / 2 ** 20), temporal_db: Math.round(readdirSync(dir).filter((f) => f.startsWith('temporal.db')).reduce((sum, f) => sum + diskBytes(path.join(dir, f)), 0) / 2 ** 20) },
      ...(probe
        ? {
          sync_probe: {
            idle: { requests: probe.idle.length, p50_ms: percentile(probe.idle, 50), p99_ms: percentile(probe.idle, 99) },
            during_batch: { requests: probe.during.length, errors: probe.errors, p50_ms: percentile(probe.during, 50), p99_ms: percentile(probe.during, 99) },
          },
        }
        : {}),
      peak_memory_mib: { node_api_and_workers_rss: Math.round(peakRss / 2 ** 20), node_heap_used: Math.round(peakHeap / 2 ** 20), temporal_dev_server_rss: peakRssMib(infra.temporal?.process.pid) },
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    clearInterval(sampler);
    await stack.stop();
    await infra.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

runBench(main);
