/**
 * What a request's own workflow (`chatRequest`, `completionRequest`, `embeddingsRequest`) tells
 * ops as its pipeline runs: its search attributes (model, pool and variant per attempt; status).
 * Workflow-only module (imports `@temporalio/workflow`).
 */
import { upsertSearchAttributes } from '@temporalio/workflow';
import { SearchAttributes } from '../contracts/ids.js';

/** The hooks a request's own workflow passes its pipeline. */
export interface RequestWorkflowHooks {
  localActivities: true;
  onAttempt: (attempt: { model: string; pool: string; variant: string | null }) => void;
  onEnd: (status: 'succeeded' | 'failed' | 'cancelled') => void;
}

/**
 * Database steps as local activities (measured faster: BENCHMARKS.md, "Sluice's pipeline"), one
 * search attribute upsert per attempt (each is a history event and a visibility write) and one
 * at the end.
 */
export function requestWorkflowHooks(): RequestWorkflowHooks {
  return {
    localActivities: true,
    onAttempt: ({ model, pool, variant }) => upsertSearchAttributes([
      { key: SearchAttributes.variant, value: variant ?? 'none' },
      { key: SearchAttributes.model, value: model },
      { key: SearchAttributes.pool, value: pool },
      { key: SearchAttributes.status, value: 'running' },
    ]),
    onEnd: (status) => upsertSearchAttributes([{ key: SearchAttributes.status, value: status }]),
  };
}
