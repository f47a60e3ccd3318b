/**
 * What the job routes (`GET /v1/jobs/{id}`, `POST /v1/jobs/{id}/cancel`) know of a request of any
 * endpoint: its workflow (from the request ID's endpoint, `contracts/ids.ts`; a batch line has
 * none of its own, it runs inside its batch), the job object's name, and its result as the
 * endpoint answers it (a chat completion; a `text_completion`, with the prompts its workflow's
 * result echoes while Temporal keeps it; embeddings as floats; the response object, from the store or the workflow).
 */
import { WorkflowFailedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Db } from '../db/database.js';
import type { RequestRow } from '../db/tables/index.js';
import { getStoredResponse } from '../db/repositories/responses.js';
import type { ChatCompletion } from '../contracts/chat.js';
import type { CompletionResult } from '../contracts/completions.js';
import type { EmbeddingsResult } from '../contracts/embeddings.js';
import { requestEndpointOf, requestWorkflowId, type RequestEndpoint } from '../contracts/ids.js';
import { toTextCompletion } from '../domain/completion-validation.js';
import { encodeEmbeddings } from '../domain/embedding-vectors.js';

/** `object` of a job, by the endpoint of its request. */
export const JOB_OBJECTS: Record<RequestEndpoint, string> = {
  chat: 'chat.completion.job',
  completions: 'text_completion.job',
  embeddings: 'embedding.job',
  responses: 'response.job',
  batch_line: 'chat.completion.job',
};

/** The workflow of a request's job, or null for a batch line (cancelled with its batch). */
export function jobWorkflowIdOf(row: Pick<RequestRow, 'id'>): string | null {
  return requestEndpointOf(row.id) === 'batch_line' ? null : requestWorkflowId(row.id);
}

/**
 * The prompts a legacy completion echoes, by choice index: from its workflow's result (the request
 * row keeps no prompt), null when it asked for no `echo` or Temporal no longer keeps the workflow.
 */
async function echoOf(temporal: Client, requestId: string): Promise<string[] | null> {
  // Gone, or ended otherwise after recording its outcome (terminated): no echo to add.
  const result = await workflowResultOf<CompletionResult>(temporal, requestId, true);
  return Array.isArray(result?.echo) ? result.echo : null;
}

/**
 * The result of the request's closed workflow, or null when Temporal no longer keeps it (and,
 * with `failedToo`, when it ended without a result). Anything else is thrown.
 */
async function workflowResultOf<T>(temporal: Client, requestId: string, failedToo: boolean): Promise<T | null> {
  try {
    return (await temporal.workflow.getHandle(requestWorkflowId(requestId)).result()) as T;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError || (failedToo && err instanceof WorkflowFailedError)) return null;
    throw err;
  }
}

/**
 * The result of a succeeded request in its endpoint's shape, or null (erased). A response's is the
 * stored one, else its workflow's while Temporal keeps it (a `store: false` response after that is
 * not kept anywhere: null).
 */
export async function jobResultOf(deps: { db: Db; temporal: Client }, row: RequestRow): Promise<unknown> {
  const endpoint = requestEndpointOf(row.id);
  if (endpoint === 'responses') {
    const stored = await getStoredResponse(deps.db, row.id, row.tenant_id);
    if (stored) return stored.response;
    return workflowResultOf<unknown>(deps.temporal, row.id, false);
  }
  if (row.result === null) return null;
  if (endpoint === 'completions') return toTextCompletion(row.result as ChatCompletion, await echoOf(deps.temporal, row.id));
  if (endpoint === 'embeddings') return encodeEmbeddings(row.result as EmbeddingsResult, 'float');
  return row.result;
}
