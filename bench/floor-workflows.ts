/**
 * Workflows that do nothing, for `bench/temporal-floor.ts`: what a workflow per request costs on
 * this machine's Temporal dev server before any of Sluice's work. Workflow-only module.
 * The `requestShaped…` variants add one of Sluice's costs each to the request's shape
 * (`bench/floor-decompose.ts`): where the dev server's CPU per request beyond the floor goes.
 */
import { proxyActivities, proxyLocalActivities, upsertSearchAttributes } from '@temporalio/workflow';
import { SearchAttributes } from '../contracts/ids.js';
import { PIPELINE_PROFILES } from '../contracts/profiles.js';

export interface FloorActivities {
  noop(x: string): Promise<string>;
  /**
   * Spends `burnMs` of this process's CPU (a step that costs the worker what Sluice's does), then
   * returns `bytes` characters, whatever it is given: a result of a given size.
   */
  sized(x: string, bytes: number, burnMs?: number): Promise<string>;
}

/**
 * CPU a Sluice sync request's steps spend in the workers beyond the floor's, ms (BENCHMARKS.md,
 * the workflow threads' table: Sluice's process ~+15 ms per request over the request-shaped floor
 * at c=32): admit, infer, complete.
 */
export const SLUICE_STEP_CPU_MS = { admit: 5, infer: 2, complete: 5 } as const;

/** The task queue of `oneActivity`'s activity: another queue, as an inference pool's is. */
export const FLOOR_POOL_QUEUE = 'floor-pool';

/**
 * Payload sizes of a Sluice sync request, in bytes (issue 18's brief: the events' JSON sizes of
 * `bench/round-trips.ts` at 9ae16af, an upper bound of the payloads they carry): the start's input,
 * the admit LA's result, the `infer` activity's input and result, the complete LA's result.
 */
export const SLUICE_PAYLOAD_BYTES = { input: 1800, admit: 1200, inferIn: 1300, inferOut: 800, complete: 700 } as const;

const { noop, sized } = proxyActivities<FloorActivities>({ startToCloseTimeout: '10s', taskQueue: FLOOR_POOL_QUEUE });
const local = proxyLocalActivities<FloorActivities>({ startToCloseTimeout: '10s' });
/** The activity with Sluice's `infer` options (schedule-to-start, heartbeat and start-to-close timeouts, retry policy). */
const inferShaped = proxyActivities<FloorActivities>({ ...PIPELINE_PROFILES.infer, taskQueue: FLOOR_POOL_QUEUE });
const localShaped = proxyLocalActivities<FloorActivities>(PIPELINE_PROFILES.db);

/** Start, one workflow task, close. */
export async function emptyWorkflow(x: string): Promise<string> {
  return x;
}

/** One activity on another task queue: the least a request that runs inference on a pool needs. */
export async function oneActivityWorkflow(x: string): Promise<string> {
  return noop(x);
}

/** A Sluice request's shape with no work in it: local activity (admit), activity on another queue (infer), local activity (complete). */
export async function requestShapedWorkflow(x: string): Promise<string> {
  await local.noop(x);
  const out = await noop(x);
  await local.noop(x);
  return out;
}

/** The request's shape with Sluice-sized payloads (`SLUICE_PAYLOAD_BYTES`; the input is the caller's). */
export async function requestShapedPayloadsWorkflow(x: string): Promise<string> {
  const admitted = await local.sized(x.slice(0, 200), SLUICE_PAYLOAD_BYTES.admit);
  const out = await sized(admitted.slice(0, 1) + 'x'.repeat(SLUICE_PAYLOAD_BYTES.inferIn), SLUICE_PAYLOAD_BYTES.inferOut);
  await local.sized(out.slice(0, 200), SLUICE_PAYLOAD_BYTES.complete);
  return out;
}

/** Status, model, pool and variant as Sluice's sync request writes them with its end. */
function endUpsert(): void {
  upsertSearchAttributes([
    { key: SearchAttributes.variant, value: 'none' },
    { key: SearchAttributes.model, value: 'instant' },
    { key: SearchAttributes.pool, value: 'bench' },
    { key: SearchAttributes.status, value: 'succeeded' },
  ]);
}

/** The request's shape with Sluice's end upsert (status, model, pool, variant) before it closes. */
export async function requestShapedUpsertWorkflow(x: string): Promise<string> {
  const out = await requestShapedWorkflow(x);
  endUpsert();
  return out;
}

/** Sluice-sized payloads and the end upsert (the caller adds the start's search attributes). */
export async function requestShapedAllWorkflow(x: string): Promise<string> {
  const out = await requestShapedPayloadsWorkflow(x);
  endUpsert();
  return out;
}

/** The request's shape with Sluice's activity options: `infer`'s timeouts and retries, the db profile for the local activities. */
export async function requestShapedOptionsWorkflow(x: string): Promise<string> {
  await localShaped.noop(x);
  const out = await inferShaped.noop(x);
  await localShaped.noop(x);
  return out;
}

/** The request's shape whose steps spend the workers' CPU Sluice's do (`SLUICE_STEP_CPU_MS`): slower workers, the same commands. */
export async function requestShapedBusyWorkflow(x: string): Promise<string> {
  await local.sized(x, 1, SLUICE_STEP_CPU_MS.admit);
  const out = await sized(x, 1, SLUICE_STEP_CPU_MS.infer);
  await local.sized(x, 1, SLUICE_STEP_CPU_MS.complete);
  return out;
}

/** Everything above at once (the caller adds the start's attributes and options): Sluice's request with no work but the workers' CPU. */
export async function requestShapedSluiceWorkflow(x: string): Promise<string> {
  const admitted = await localShaped.sized(x.slice(0, 200), SLUICE_PAYLOAD_BYTES.admit, SLUICE_STEP_CPU_MS.admit);
  const out = await inferShaped.sized(admitted.slice(0, 1) + 'x'.repeat(SLUICE_PAYLOAD_BYTES.inferIn), SLUICE_PAYLOAD_BYTES.inferOut, SLUICE_STEP_CPU_MS.infer);
  await localShaped.sized(out.slice(0, 200), SLUICE_PAYLOAD_BYTES.complete, SLUICE_STEP_CPU_MS.complete);
  endUpsert();
  return out;
}
