/**
 * CPU time per JavaScript thread per workflow (Linux), for the sync path against its floor
 * (issue 18 target 1): which of the process's threads a request's Node CPU is spent on.
 *
 *   THREAD_CPU_DIR=/tmp/tc node --require ./bench/thread-cpu.cjs --import tsx bench/pipeline.ts --modes local --requests 60 --seconds 8
 *   node bench/thread-cpu.cjs /tmp/tc [--window-s 7]
 *
 * Preloaded (`--require`, which worker threads inherit), each JS thread (the main thread, the
 * control worker's workflow threads) appends every 500 ms its CPU time (`/proc/thread-self/stat`,
 * 10 ms ticks) and, on a workflow thread, how many workflows it has created (calls of the SDK's
 * `initRuntime` into the sandbox). The summary takes the last `--window-s` seconds before the last
 * new workflow (the end of the last c=32 phase: Sluice's with `--modes local`, the request-shaped
 * floor's with `--modes floor`) and prints CPU ms per workflow per thread. Threads that run no
 * JavaScript (the SDK core's Rust threads, V8's GC helpers) are the process's total
 * (`cpu_ms_per_request.node`) minus these.
 */
/* global require, process, module, setInterval */
/* eslint-disable @typescript-eslint/no-require-imports -- a CommonJS preload (`--require`), which worker threads inherit */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

function record(dir) {
  const { isMainThread, threadId } = require('node:worker_threads');
  let workflows = 0;
  if (!isMainThread) {
    const vm = require('node:vm');
    const run = vm.Script.prototype.runInContext;
    vm.Script.prototype.runInContext = function (context, options) {
      if (context?.__temporal_args?.[1] === 'initRuntime') workflows += 1;
      return run.call(this, context, options);
    };
  }
  const file = path.join(dir, `thread-${process.pid}-${threadId}.jsonl`);
  setInterval(() => {
    const fields = fs.readFileSync('/proc/thread-self/stat', 'utf8').split(') ')[1].split(' ');
    const ms = (Number(fields[11]) + Number(fields[12])) * 10;
    fs.appendFileSync(file, `${JSON.stringify({ threadId, ms, workflows, t: Date.now() })}\n`);
  }, 500).unref();
}

function summarise(dir, windowS) {
  const series = fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl'))
    .map((f) => fs.readFileSync(path.join(dir, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l)));
  const at = (s, t) => s.filter((x) => x.t <= t).pop() ?? s[0];
  const workflowThreads = series.filter((s) => s.some((x) => x.workflows > 0));
  const created = (t) => workflowThreads.reduce((n, s) => n + at(s, t).workflows, 0);
  let end = 0;
  let most = -1;
  for (const t of [...new Set(workflowThreads.flat().map((x) => x.t))].sort((a, b) => a - b)) {
    if (created(t) > most) [most, end] = [created(t), t];
  }
  const start = end - windowS * 1000;
  const n = created(end) - created(start);
  const perThread = series.map((s) => ({
    thread: s[0].threadId === 0 ? 'main' : workflowThreads.includes(s) ? `workflow thread ${s[0].threadId}` : `thread ${s[0].threadId}`,
    cpu_ms_per_workflow: Math.round(((at(s, end).ms - at(s, start).ms) / n) * 100) / 100,
  }));
  const total = Math.round(perThread.reduce((sum, p) => sum + p.cpu_ms_per_workflow, 0) * 100) / 100;
  process.stdout.write(`${JSON.stringify({ window_s: windowS, workflows: n, threads: perThread, js_threads_total_ms_per_workflow: total }, null, 2)}\n`);
}

if (require.main === module) {
  const [dir, flag, value] = process.argv.slice(2);
  if (!dir) throw new Error('usage: node bench/thread-cpu.cjs DIR [--window-s 7]');
  summarise(dir, flag === '--window-s' ? Number(value) : 7);
} else if (process.env.THREAD_CPU_DIR) {
  record(process.env.THREAD_CPU_DIR);
}
