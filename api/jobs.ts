/**
 * What the job routes (`GET /v1/jobs/{id}`, `POST /v1/jobs/{id}/cancel`) know of a request of any
 * endpoint: its workflow (from the request ID's endpoint, `contracts/ids.ts`; a batch line has
 * none of its own, it runs inside its batch), the job object's name, and its result as the
 * endpoint answers it (a chat completion; a `text_completion` without `echo`, which the row does
 * not keep; embeddings as floats; the response object, from the store or the workflow).
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Db } from '../db/database.js';
import type { RequestRow } from '../db/tables/index.js';
import { getStoredResponse } from '../db/repositories/responses.js';
import type { ChatCompletion } from '../contracts/chat.js';
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
 * The result of a succeeded request in its endpoint's shape, or null (erased). A response's is the
 * stored one, else its workflow's while Temporal keeps it (a `store: false` response after that is
 * not kept anywhere: null).
 */
export async function jobResultOf(deps: { db: Db; temporal: Client }, row: RequestRow): Promise<unknown> {
  const endpoint = requestEndpointOf(row.id);
  if (endpoint === 'responses') {
    const stored = await getStoredResponse(deps.db, row.id, row.tenant_id);
    if (stored) return stored.response;
    try {
      return await deps.temporal.workflow.getHandle(requestWorkflowId(row.id)).result();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      throw err;
    }
  }
  if (row.result === null) return null;
  if (endpoint === 'completions') return toTextCompletion(row.result as ChatCompletion, '', false);
  if (endpoint === 'embeddings') return encodeEmbeddings(row.result as EmbeddingsResult, 'float');
  return row.result;
}
