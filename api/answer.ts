/**
 * A sync chat request's answer as soon as it is durable: the output of the inference attempt that
 * served it, read from the request workflow's history the moment the attempt's completion is
 * recorded there, while the workflow goes on to settle and audit it (its next workflow task).
 *
 * Billing stays exactly once: the request was started with `answeredEarly`, and its `infer` attempt
 * was scheduled with `ANSWERED_EARLY_SUMMARY`, which only a worker that honours the flag writes:
 * such a workflow settles a served attempt whatever cancel follows, and retries that settlement
 * until it succeeds (`workflows/over-deployments.ts`). Anything else the history shows first (the
 * workflow closed: a cache hit, a failure, a cancel; a cancel was requested before the attempt
 * completed; an attempt scheduled without the summary) is answered as before, by the workflow's
 * result. README "When a sync answer leaves" (`SLUICE_EARLY_ANSWER`).
 */
import type { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { decodeOptionalSinglePayload } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { ANSWERED_EARLY_SUMMARY, type InferInput, type InferOutput } from '../contracts/chat.js';

/** `temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT`. */
const ALL_EVENTS = 1;
/** The marker name of `patched()` (sdk-core's `PATCH_MARKER_NAME`). */
const PATCH_MARKER = 'core_patch';
/** The inference activity's type (`InferenceActivities.infer`). */
const INFER = 'infer';
/** The response cache's lookup step (`lookupCache`), a local activity: its marker names it. */
const LOOKUP_CACHE = 'lookupCache';

/**
 * What the history said first: the served attempt's output, the model it was served as (its
 * deployment's: an experiment variant's, if any) and whether the workflow consulted the response
 * cache before it (then the lookup's `miss` is on the row), or "ask the workflow's result".
 */
export type EarlyAnswer = { served: true; model: string; out: InferOutput; consultedCache: boolean } | { served: false };

/**
 * Follows the history of `workflowId` (long polls of its new events) until the first completed
 * `infer` activity, or until the workflow closes or is asked to cancel first. Answers only an
 * attempt scheduled with `ANSWERED_EARLY_SUMMARY` (its worker honours `answeredEarly`): any other
 * is answered by its result.
 */
export async function awaitEarlyAnswer(temporal: Client, workflowId: string): Promise<EarlyAnswer> {
  const { namespace, loadedDataConverter: converter } = temporal.workflow.options;
  // The SDK's own decoding (the client's codecs in reverse, then the payload converter), as `result()` does.
  const decode = async <T>(payload: Payload): Promise<T | null | undefined> => decodeOptionalSinglePayload<T>(converter, payload);
  /** The model of each scheduled `infer` attempt, by its scheduled event's ID. */
  const inferModel = new Map<string, string>();
  let consultedCache = false;
  let nextPageToken: Uint8Array | undefined;
  for (;;) {
    const res = await temporal.workflowService.getWorkflowExecutionHistory({
      namespace, execution: { workflowId }, waitNewEvent: true, historyEventFilterType: ALL_EVENTS, skipArchival: true,
      ...(nextPageToken !== undefined ? { nextPageToken } : {}),
    });
    for (const e of res.history?.events ?? []) {
      if (e.markerRecordedEventAttributes) {
        const marker = e.markerRecordedEventAttributes;
        // `patched()`'s markers (no `data` detail) are not a local activity's.
        if (marker.markerName !== PATCH_MARKER) consultedCache ||= markerMayName(marker.details, LOOKUP_CACHE);
      } else if (e.activityTaskScheduledEventAttributes?.activityType?.name === INFER) {
        const input = e.activityTaskScheduledEventAttributes.input?.payloads?.[0];
        const summary = e.userMetadata?.summary;
        // Scheduled without the summary (started without `answeredEarly`: by an API before it or
        // with the option off, or not a sync request; or run by a worker that ignores the flag):
        // its workflow may leave a served attempt unbilled on a late cancel, so its result answers.
        if (!summary || (await decode<string>(summary as Payload)) !== ANSWERED_EARLY_SUMMARY) return { served: false };
        if (!input) continue;
        const model = (await decode<InferInput>(input as Payload))?.deployment?.model;
        if (typeof model === 'string') inferModel.set(String(e.eventId), model);
      } else if (e.activityTaskCompletedEventAttributes) {
        const done = e.activityTaskCompletedEventAttributes;
        const model = inferModel.get(String(done.scheduledEventId));
        const result = done.result?.payloads?.[0];
        const out = model === undefined || !result ? null : await decode<InferOutput>(result as Payload);
        if (model === undefined || !out) continue;
        return { served: true, model, out, consultedCache };
      } else if (e.workflowExecutionCancelRequestedEventAttributes || isClose(e)) {
        return { served: false };
      }
    }
    if (!res.nextPageToken || res.nextPageToken.length === 0) return { served: false };
    nextPageToken = res.nextPageToken;
  }
}

/**
 * Whether a marker may be the local activity `activityType`'s: its `data` detail (the SDK's own
 * record of the local activity, never passed through the payload codec) names its type. A marker
 * without readable data counts as naming it (the caller then reads what it needs from the row).
 */
function markerMayName(details: Record<string, { payloads?: Array<{ data?: Uint8Array | null }> | null }> | null | undefined, activityType: string): boolean {
  const data = details?.data?.payloads?.[0]?.data;
  if (!data) return true;
  return Buffer.from(data).toString('utf8').includes(`"activity_type":"${activityType}"`);
}

function isClose(e: object): boolean {
  const a = e as Record<string, unknown>;
  return Boolean(
    a.workflowExecutionCompletedEventAttributes || a.workflowExecutionFailedEventAttributes || a.workflowExecutionCanceledEventAttributes
    || a.workflowExecutionTerminatedEventAttributes || a.workflowExecutionTimedOutEventAttributes || a.workflowExecutionContinuedAsNewEventAttributes,
  );
}
