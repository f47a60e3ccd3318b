/**
 * `responseRequest`: one `/v1/responses` request, its own workflow kind in `response-<requestId>`,
 * through the same request pipeline as a chat request (authorized, reserved, billed and audited
 * alike; usage step `infer`, as chat and legacy completions record theirs). The API translated the
 * request into the pipeline's chat input (instructions as a system message, the chain's earlier
 * turns from the stored previous response, then the input); the workflow builds the response
 * object and, for `store: true`, stores it in a durable step before answering, so a response the
 * client got is retrievable even if the API process died meanwhile.
 */
import { proxyLocalActivities } from '@temporalio/workflow';
import type { ResponseActivities } from '../activities/responses.js';
import type { ResponseObject, ResponseRequestInput } from '../contracts/responses.js';
import { PIPELINE_PROFILES as PROFILES } from '../contracts/profiles.js';
import { assistantTurnOf, responseOf } from '../domain/responses-object.js';
import { runChatPipeline } from './pipeline.js';
import { requestWorkflowHooks } from './request-workflow.js';

const { storeResponse } = proxyLocalActivities<ResponseActivities>(PROFILES.db);

export async function responseRequest(input: ResponseRequestInput): Promise<ResponseObject> {
  const completion = await runChatPipeline(input.request, requestWorkflowHooks());
  const response = responseOf(input.request.requestId, input.echo, completion);
  if (input.echo.store) {
    await storeResponse({
      tenantId: input.request.tenantId,
      response,
      inputItems: input.inputItems,
      conversation: [...input.conversation, assistantTurnOf(response)],
    });
  }
  return response;
}
