/**
 * Where one sync request's wall time goes, span by span, against the floors (issue 18 target 1:
 * "find where the time goes"): one request at a time, the times of its workflow's history events
 * (the dev server's clock, the same machine's as ours) and the caller's own send and receive, for
 *  - `oneActivity`: the one-activity floor (`bench/floor-workflows.ts`: a workflow whose one
 *    activity runs on another task queue), started by an in-process client (eager start, then the
 *    result's long poll);
 *  - `requestShaped`: the same shape as a Sluice request with no work in it (local activity,
 *    activity on another queue, local activity);
 *  - `sluice`: a sync chat completion of the instant model through Sluice's API (HTTP from this
 *    process) with `SLUICE_EARLY_ANSWER` off (answered by the workflow's result), its workflow, the
 *    control worker's `admit` and `complete`, the inference worker;
 *  - `sluiceEarly`: the same through a second API of the same process and stack, with
 *    `SLUICE_EARLY_ANSWER` on, the default (`api/answer.ts`: answered once the `infer` completion is in the
 *    history, so its "closed → caller has the answer" is negative); the next request goes out while
 *    the workflow settles, as a caller's next one would;
 *  - `sluiceEarlySpaced`: the same, the next request sent only once the workflow closed (a caller
 *    whose requests are further apart than a settlement).
 * Spans: caller → workflow started (Sluice: HTTP, auth, validation, the API's statements, the start
 * RPC); the first workflow task (started → completed: the workflow created, the first local
 * activity, the activity scheduled); the activity's dispatch (scheduled → started) and run
 * (started → completed); the second workflow task's dispatch and run (its local activity, the
 * close); closed → caller has the answer (the result's long poll; Sluice: and its HTTP answer).
 * Also every PostgreSQL statement Sluice's process sent, by name, with its median round trip (pg's
 * `Client.query` from call to result), so a span can be read against the SQL inside it.
 * The variants alternate in blocks of `--block` requests per round (this VM drifts between minutes);
 * the first `--warmup` requests of each variant are not counted. Not a test; nothing is asserted.
 *
 * Run: `npx tsx bench/sync-timeline.ts [--rounds 5] [--block 20] [--warmup 20]` (`npm run bench -- sync-timeline`).
 */
import { parseArgs } from 'node:util';
import { Client } from '@temporalio/client';
import proto, { type temporal } from '@temporalio/proto';
import { NativeConnection } from '@temporalio/worker';
import { chatWorkflowId } from '../contracts/ids.js';
import { percentile } from './stats.js';
import { eventMs, interceptQueries } from './instrument.js';
import { FLOOR_QUEUE, startFloorWorkers } from './temporal-floor.js';
import { addInstantModel, addTenantKey, machine, printResults, runBench, startApi, syncChatTarget, withBenchInfra, withStack } from './setup.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '5' }, block: { type: 'string', default: '20' }, warmup: { type: 'string', default: '20' } },
});
const ROUNDS = Number(values.rounds);
const BLOCK = Number(values.block);
const WARMUP = Number(values.warmup);
for (const [name, n] of [['rounds', ROUNDS], ['block', BLOCK], ['warmup', WARMUP]] as const) {
  if (!Number.isSafeInteger(n) || n < (name === 'warmup' ? 0 : 1)) throw new Error(`--${name}: a whole number${name === 'warmup' ? '' : ' ≥ 1'}`);
}

const VARIANTS = ['oneActivity', 'requestShaped', 'sluice', 'sluiceEarly', 'sluiceEarlySpaced'] as const;
type Variant = (typeof VARIANTS)[number];

const SPANS = [
  'caller → workflow started',
  'first workflow task (started → completed)',
  'activity dispatch (scheduled → started)',
  'activity run (started → completed)',
  'second workflow task dispatch (scheduled → started)',
  'second workflow task (started → completed)',
  'workflow closed → caller has the answer',
  'total',
] as const;
type Span = (typeof SPANS)[number];

const EventType = proto.temporal.api.enums.v1.EventType;

/**
 * The spans of one request from its history (the last workflow task before the close is the
 * second; the activity is the one on another queue) and the caller's send and receive times.
 */
function spansOf(events: temporal.api.history.v1.IHistoryEvent[], sent: number, received: number): Record<Span, number> {
  const at = (type: temporal.api.enums.v1.EventType, which: 'first' | 'last' = 'first') => {
    const found = which === 'first' ? events.find((e) => e.eventType === type) : events.findLast((e) => e.eventType === type);
    if (!found) throw new Error(`no ${EventType[type]} event in the history`);
    return eventMs(found);
  };
  const started = at(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED);
  const closed = at(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
  return {
    'caller → workflow started': started - sent,
    'first workflow task (started → completed)': at(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) - at(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED),
    'activity dispatch (scheduled → started)': at(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED) - at(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
    'activity run (started → completed)': at(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) - at(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED),
    'second workflow task dispatch (scheduled → started)': at(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 'last') - at(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 'last'),
    'second workflow task (started → completed)': at(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 'last') - at(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 'last'),
    'workflow closed → caller has the answer': received - closed,
    total: received - sent,
  };
}

/** Each statement's round trip, by prepared name (or its text's start), while `counting`. */
const statements = new Map<string, { text: string; ms: number[] }>();
let counting = false;
interceptQueries(({ name, text, sentAt, answered }) => {
  if (!counting || answered === undefined) return;
  const oneLine = text.replace(/\s+/g, ' ').trim();
  const key = name ?? oneLine.slice(0, 60);
  void answered.then(() => {
    const s = statements.get(key) ?? { text: oneLine.slice(0, 100), ms: [] };
    s.ms.push(performance.now() - sentAt);
    statements.set(key, s);
  }, () => undefined);
});

async function main() {
  const results = await withBenchInfra('sync-timeline', { SLUICE_SLOTS: '64' }, async (bench) => {
    const namespace = bench.config.temporalNamespace;
    const connection = await NativeConnection.connect({ address: bench.infra.temporalAddress });
    const floorWorkers = await startFloorWorkers(connection, namespace);
    try {
      const client = new Client({ connection, namespace });
      // The stack's own API with the option off (the `sluice` variant), a second one with it on.
      return await withStack(bench, { config: { ...bench.config, earlyAnswer: false } }, async (stack) => {
        await addInstantModel(stack.db);
        const secret = (await addTenantKey(stack.db)).secret;
        const early = await startApi(stack, bench.config, { earlyAnswer: true });
        try {
          const targets = { sluice: syncChatTarget(stack.url, secret), sluiceEarly: syncChatTarget(early.url, secret), sluiceEarlySpaced: syncChatTarget(early.url, secret) };
          let seq = 0;
          /**
           * One request of `variant`; what it returns reads its spans once its workflow closed (an
           * early answer's workflow settles after the caller has the answer: the next request goes
           * out meanwhile, as a caller's next one would).
           */
          async function one(variant: Variant): Promise<() => Promise<Record<Span, number>>> {
            if (variant !== 'oneActivity' && variant !== 'requestShaped') {
              const target = targets[variant];
              const sent = Date.now();
              const res = await fetch(target.url, { method: 'POST', headers: target.headers, body: target.body });
              const body = (await res.json()) as { id?: string };
              const received = Date.now();
              if (res.status !== 200 || typeof body.id !== 'string') throw new Error(`status ${res.status}: ${JSON.stringify(body)}`);
              const handle = stack.client.workflow.getHandle(chatWorkflowId(body.id.replace(/^chatcmpl-/, '')));
              if (variant === 'sluiceEarlySpaced') await handle.result();
              return async () => {
                await handle.result();
                return spansOf((await handle.fetchHistory()).events ?? [], sent, received);
              };
            }
            const workflow = variant === 'oneActivity' ? 'oneActivityWorkflow' : 'requestShapedWorkflow';
            const sent = Date.now();
            const handle = await client.workflow.start(workflow, { taskQueue: FLOOR_QUEUE, workflowId: `timeline-${variant}-${seq++}`, args: ['x'], requestEagerStart: true });
            await handle.result();
            const received = Date.now();
            const history = await handle.fetchHistory();
            return async () => spansOf(history.events ?? [], sent, received);
          }
          for (const v of VARIANTS) for (let i = 0; i < WARMUP; i++) await one(v);
          const spans = Object.fromEntries(VARIANTS.map((v) => [v, Object.fromEntries(SPANS.map((s) => [s, [] as number[]]))])) as Record<Variant, Record<Span, number[]>>;
          let sluiceRequests = 0;
          for (let r = 0; r < ROUNDS; r++) {
            // Rotated order each round, so no variant always follows the same one.
            for (let k = 0; k < VARIANTS.length; k++) {
              const v = VARIANTS[(r + k) % VARIANTS.length] as Variant;
              counting = v !== 'oneActivity' && v !== 'requestShaped';
              const block: Array<() => Promise<Record<Span, number>>> = [];
              for (let i = 0; i < BLOCK; i++) block.push(await one(v));
              for (const read of block) {
                const s = await read();
                for (const span of SPANS) spans[v][span].push(s[span]);
              }
              if (counting) sluiceRequests += BLOCK;
              counting = false;
            }
          }
          const median = (xs: number[]) => percentile(xs, 50);
          return {
            requests_per_variant: ROUNDS * BLOCK,
            spans_p50_ms: SPANS.map((span) => ({
              span,
              ...Object.fromEntries(VARIANTS.map((v) => [v, median(spans[v][span])])),
              sluice_minus_one_activity: Math.round((median(spans.sluice[span]) - median(spans.oneActivity[span])) * 10) / 10,
              early_minus_one_activity: Math.round((median(spans.sluiceEarly[span]) - median(spans.oneActivity[span])) * 10) / 10,
              early_spaced_minus_one_activity: Math.round((median(spans.sluiceEarlySpaced[span]) - median(spans.oneActivity[span])) * 10) / 10,
            })),
            sluice_statements: [...statements.entries()].map(([name, s]) => ({
              name, text: s.text, per_request: Math.round((s.ms.length / sluiceRequests) * 100) / 100, p50_ms: median(s.ms),
            })).sort((a, b) => b.p50_ms - a.p50_ms),
          };
        } finally {
          await early.close();
        }
      });
    } finally {
      await floorWorkers.stop();
      await connection.close();
    }
  });
  printResults({ machine: machine(), rounds: ROUNDS, block: BLOCK, warmup: WARMUP, ...results });
}

runBench(main);
