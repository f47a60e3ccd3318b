/**
 * What a request's own workflow (`chatRequest`, `completionRequest`, `embeddingsRequest`) tells
 * ops as its pipeline runs: its search attributes (model, pool and variant per attempt; status).
 * Workflow-only module (imports `@temporalio/workflow`).
 */
import { upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { SearchAttributes } from '../contracts/ids.js';

/** The hooks a request's own workflow passes its pipeline. */
export interface RequestWorkflowHooks {
  localActivities: true;
  onAttempt: (attempt: { model: string; pool: string; variant: string | null }) => void;
  onEnd: (status: 'succeeded' | 'failed' | 'cancelled') => void;
}

type Attempt = Parameters<RequestWorkflowHooks['onAttempt']>[0];
type Attribute = ReturnType<typeof attemptAttributes>[number];

function attemptAttributes(a: Attempt) {
  return [
    { key: SearchAttributes.variant, value: a.variant ?? 'none' },
    { key: SearchAttributes.model, value: a.model },
    { key: SearchAttributes.pool, value: a.pool },
  ];
}

/**
 * `attributes` but those the workflow already carries with the same value (from its start or an
 * earlier upsert): a sync request's model, written at its start, is not written again at its end
 * unless a variant changed it. Only for the end's upsert, which always carries its status: the
 * number of upserts stays what it was (sdk-core matches a recorded upsert by its command type,
 * not by its attributes, so histories that wrote the model again replay the same).
 */
function changed(attributes: Attribute[]): Attribute[] {
  const current = workflowInfo().typedSearchAttributes;
  return attributes.filter((a) => current.get(a.key) !== a.value);
}

/**
 * Database steps as local activities (measured faster: BENCHMARKS.md, "Sluice's pipeline"), and
 * the search attributes. A request started as `queued` upserts its model, pool, variant and
 * status `running` when an attempt starts, and its status at its end. A request started as
 * `running` (a sync request, streamed or not: `api/workflow-start.ts`) has its status
 * already: its last attempt's pool and variant (and its model, if a variant changed it) go with
 * its final status, in the one upsert at its end (each upsert is a history event and a visibility
 * write: BENCHMARKS.md, "Issue 18, target 1: the API's and Temporal's CPU"). Which of the two is
 * decided by the attributes the workflow started with, so a replay of any history takes the path
 * its run took.
 */
export function requestWorkflowHooks(): RequestWorkflowHooks {
  const startedRunning = workflowInfo().typedSearchAttributes.get(SearchAttributes.status) === 'running';
  /** The last attempt, written with the end (a request started as `running`). */
  let last: Attempt | null = null;
  return {
    localActivities: true,
    onAttempt: (a) => {
      if (startedRunning) {
        last = a;
        return;
      }
      upsertSearchAttributes([...attemptAttributes(a), { key: SearchAttributes.status, value: 'running' }]);
    },
    onEnd: (status) => upsertSearchAttributes(changed([...(last === null ? [] : attemptAttributes(last)), { key: SearchAttributes.status, value: status }])),
  };
}
