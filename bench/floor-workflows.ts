/**
 * Workflows that do nothing, for `bench/temporal-floor.ts`: what a workflow per request costs on
 * this machine's Temporal dev server before any of Sluice's work. Workflow-only module.
 */
import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';

export interface FloorActivities {
  noop(x: string): Promise<string>;
}

/** The task queue of `oneActivity`'s activity: another queue, as an inference pool's is. */
export const FLOOR_POOL_QUEUE = 'floor-pool';

const { noop } = proxyActivities<FloorActivities>({ startToCloseTimeout: '10s', taskQueue: FLOOR_POOL_QUEUE });
const local = proxyLocalActivities<FloorActivities>({ startToCloseTimeout: '10s' });

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
