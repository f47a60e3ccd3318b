/**
 * A sync request's answer as soon as it is durable: the output of the inference attempt that
 * served it, read from the request workflow's history the moment the attempt's completion is
 * recorded there, while the workflow goes on to settle and audit it (its next workflow task).
 * Billing is unchanged: the workflow settles what its history holds, exactly once, whoever read
 * it first. Anything else the history shows first (the workflow closed: a cache hit, a failure, a
 * cancel; a cancel was requested before the attempt completed) is answered as before, by the
 * workflow's result. README "One request, step by step".
 */
import type { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import type { InferOutput } from '../contracts/chat.js';
import { SearchAttributes } from '../contracts/ids.js';

/** `temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT`. */
const ALL_EVENTS = 1;

/**
 * What the history said first: the served attempt's output, the request's final model and
 * whether the workflow consulted the response cache before it (then its `miss` is on the row), or
 * "ask the workflow's result".
 */
export type EarlyAnswer = { served: true; model: string; out: InferOutput; consultedCache: boolean } | { served: false };

/** The inference activity's type (`InferenceActivities.infer`). */
const INFER = 'infer';
/** The response cache's lookup step (`lookupCache`), a local activity: its marker names it. */
const LOOKUP_CACHE = 'lookupCache';

/**
 * Follows the history of `workflowId` (long polls of its new events) until the first completed
 * `infer` activity, or until the workflow closes or is asked to cancel first. The final model is
 * the `SluiceModel` the workflow upserted for that attempt (its experiment variant's, if any).
 */
export async function awaitEarlyAnswer(temporal: Client, workflowId: string): Promise<EarlyAnswer> {
  const { namespace, loadedDataConverter: converter } = temporal.workflow.options;
  const inferScheduled = new Set<string>();
  let model: string | null = null;
  let consultedCache = false;
  let nextPageToken: Uint8Array | undefined;
  for (;;) {
    const res = await temporal.workflowService.getWorkflowExecutionHistory({
      namespace, execution: { workflowId }, waitNewEvent: true, historyEventFilterType: ALL_EVENTS, skipArchival: true,
      ...(nextPageToken !== undefined ? { nextPageToken } : {}),
    });
    for (const e of res.history?.events ?? []) {
      if (e.markerRecordedEventAttributes) {
        consultedCache ||= markerMayName(e.markerRecordedEventAttributes.details, LOOKUP_CACHE);
      } else if (e.upsertWorkflowSearchAttributesEventAttributes) {
        const field = e.upsertWorkflowSearchAttributesEventAttributes.searchAttributes?.indexedFields?.[SearchAttributes.model.name];
        if (field) model = converter.payloadConverter.fromPayload<string>(field);
      } else if (e.activityTaskScheduledEventAttributes?.activityType?.name === INFER) {
        inferScheduled.add(String(e.eventId));
      } else if (e.activityTaskCompletedEventAttributes) {
        const done = e.activityTaskCompletedEventAttributes;
        const result = done.result?.payloads?.[0];
        if (!inferScheduled.has(String(done.scheduledEventId)) || !result || model === null) continue;
        const [plain] = await converter.payloadCodecs.reduceRight<Promise<Payload[]>>(async (p, codec) => codec.decode(await p), Promise.resolve([result as Payload]));
        return { served: true, model, out: converter.payloadConverter.fromPayload<InferOutput>(plain as Payload), consultedCache };
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
