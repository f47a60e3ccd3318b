/**
 * `/v1/responses` batch lines' output: the response object of a succeeded line, from the line's
 * body and its stored completion. Pure.
 */
import type { ChatCompletion } from '../contracts/chat.js';
import type { ResponseObject } from '../contracts/responses.js';
import { responseOf } from './responses-object.js';
import { validateResponsesBody } from './responses-validation.js';

/**
 * The response object of a succeeded `/v1/responses` batch line (its `id` is `resp_<line request
 * ID>`, `store: false`), from the line's body (validated when the batch started) and the line's
 * stored completion.
 */
export function batchLineResponse(content: string, completion: ChatCompletion, requestId: string): ResponseObject {
  const line = JSON.parse(content) as { body?: unknown };
  const echo = { ...validateResponsesBody(line.body).echo, store: false };
  return responseOf(`resp_${requestId}`, echo, completion);
}
