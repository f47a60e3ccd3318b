/**
 * `stream: true` answers of `POST /v1/responses`: server-sent Responses events, in OpenAI's order
 * and shapes, each with its `sequence_number`: `response.created`, `response.in_progress`,
 * `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`…,
 * `response.output_text.done`, `response.content_part.done`, `response.output_item.done`, then
 * `response.completed` (or `response.incomplete` at `max_output_tokens`), or `response.failed` when
 * the request fails after the stream opened. Built on the chat streaming channel: the text comes
 * from `stream_chunks` (woken by the stream hub's `LISTEN`), the end from the request's workflow,
 * the source of truth for the response, its billing, audit and storage. A request that fails
 * before any event (a refused quota, every deployment down) gets the HTTP error a non-streamed
 * request gets. A client that disconnects cancels the request unless it sent
 * `X-Sluice-Stream-Detach: true`.
 */
import type { Response } from 'express';
import type { Client } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import type { RequestRow } from '../../db/tables/index.js';
import { closeStream } from '../../db/repositories/streams.js';
import type { ResponseEcho, ResponseObject } from '../../contracts/responses.js';
import { responseWorkflowId } from '../../contracts/ids.js';
import { outputMessageId, responseInProgress, responseShellOf } from '../../domain/responses-object.js';
import type { responseRequest } from '../../workflows/response-request.js';
import type { Metrics } from '../../runtime/metrics.js';
import type { Logger } from '../../runtime/logger.js';
import { HttpError, fromWorkflowFailure } from '../errors.js';
import type { StreamHub } from '../stream-hub.js';
import { followChunks } from '../stream-follow.js';

export interface ResponseStreamDeps {
  db: Db;
  temporal: Client;
  metrics: Metrics;
  log: Logger;
  streams: StreamHub;
}

type Outcome = { ok: true; response: ResponseObject } | { ok: false; err: unknown };

/** What the response says of a request whose fields are unknown here: a resumed stream of a response that failed. */
const UNKNOWN_ECHO: ResponseEcho = {
  instructions: null, maxOutputTokens: null, temperature: null, topP: null, previousResponseId: null, metadata: {}, user: null, store: false, format: { type: 'text' }, verbosity: null,
};

/**
 * Answers `row`'s `/v1/responses` request as a stream of Responses events. Every event carries its
 * `sequence_number` as its SSE `id`, and the same request always gives the same events (the
 * chunks are stored, the end is the workflow's), so a resumed stream (`startingAfter`: the last
 * sequence number the client has) sends the events after it. `echo` null (a resume): the
 * `response.created`/`in_progress` shell is built from the finished response, so a client that
 * has neither waits for the end.
 */
export async function streamResponse(
  deps: ResponseStreamDeps, res: Response, row: RequestRow, echo: ResponseEcho | null, options: { cancelOnDisconnect: boolean; startingAfter?: number },
): Promise<void> {
  const after = options.startingAfter ?? -1;
  const handle = deps.temporal.workflow.getHandle<typeof responseRequest>(responseWorkflowId(row.id));
  let outcome: Outcome | null = null;
  const settled = handle.result().then(
    (response) => { outcome = { ok: true, response }; },
    (err: unknown) => { outcome = { ok: false, err }; },
  );
  let ended = false;
  let gone = false;
  res.on('close', () => {
    if (ended) return;
    gone = true;
    if (!options.cancelOnDisconnect) return;
    void (async () => {
      try {
        await closeStream(deps.db, row.id);
        await handle.cancel();
      } catch (err) {
        deps.log.warn('closing a stream failed', { request_id: row.id, error: err instanceof Error ? err.message : String(err) });
      }
    })();
  });

  const id = row.id;
  const itemId = outputMessageId(id);
  const createdAt = Math.floor(row.created_at.getTime() / 1000);
  let shell = echo !== null ? responseInProgress(id, createdAt, row.model, echo) : null;
  const shellOf = async (): Promise<ResponseObject> => {
    if (shell !== null) return shell;
    await settled;
    const end = outcome as Outcome | null;
    shell = end?.ok === true ? responseShellOf(end.response, row.model) : responseInProgress(id, createdAt, row.model, UNKNOWN_ECHO);
    return shell;
  };
  let sequence = 0;
  const send = (type: string, data: Record<string, unknown>) => {
    if (sequence > after) res.write(`id: ${sequence}\nevent: ${type}\ndata: ${JSON.stringify({ type, ...data, sequence_number: sequence })}\n\n`);
    sequence += 1;
  };
  const where = { item_id: itemId, output_index: 0, content_index: 0 };
  let opened = false;
  const open = async () => {
    if (opened) return;
    opened = true;
    const first = after < 1 ? await shellOf() : shell;
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    send('response.created', { response: first });
    send('response.in_progress', { response: first });
  };
  // The assistant message is output item 0, opened with its first text (an answer that is only
  // function calls has none).
  let messageOpen = false;
  const openMessage = async () => {
    await open();
    if (messageOpen) return;
    messageOpen = true;
    send('response.output_item.added', { output_index: 0, item: { id: itemId, type: 'message', role: 'assistant', status: 'in_progress', content: [] } });
    send('response.content_part.added', { ...where, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
  };

  const followed = await followChunks(deps, row.id, settled, { finished: () => outcome !== null, gone: () => gone }, async (r) => {
    await openMessage();
    send('response.output_text.delta', { ...where, delta: r.content, logprobs: [] });
  });
  if (followed === null) return;
  const { text } = followed;
  const end = outcome as unknown as Outcome;
  if (!end.ok) {
    const mapped = fromWorkflowFailure(end.err) ?? new HttpError('server_error', 'The request failed', 'internal_error');
    deps.metrics.chatRequests.inc({ model: row.model, status: String(mapped.status), tenant: row.tenant_id });
    if (!res.headersSent) {
      ended = true;
      throw mapped;
    }
    if (mapped.detail) deps.log.warn('stream ended with an error', { request_id: row.id, detail: mapped.detail });
    send('response.failed', { response: { ...(await shellOf()), status: 'failed', error: { code: mapped.code ?? mapped.type, message: mapped.message } } });
    ended = true;
    res.end();
    return;
  }
  const response = end.response;
  const full = response.output_text;
  await open();
  for (const [index, item] of response.output.entries()) {
    if (item.type === 'function_call') {
      // A call arrives whole (its arguments are complete JSON only at the end of the generation).
      const at = { item_id: item.id, output_index: index };
      send('response.output_item.added', { output_index: index, item: { ...item, arguments: '', status: 'in_progress' } });
      send('response.function_call_arguments.delta', { ...at, delta: item.arguments });
      send('response.function_call_arguments.done', { ...at, name: item.name, arguments: item.arguments });
      send('response.output_item.done', { output_index: index, item });
      continue;
    }
    await openMessage();
    // No channel (or a backend that held text back): the rest of the text, from the response.
    if (full.startsWith(text) && full.length > text.length) send('response.output_text.delta', { ...where, delta: full.slice(text.length), logprobs: [] });
    send('response.output_text.done', { ...where, text: full, logprobs: [] });
    send('response.content_part.done', { ...where, part: item.content[0] ?? { type: 'output_text', text: full, annotations: [], logprobs: [] } });
    send('response.output_item.done', { output_index: index, item });
  }
  send(response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response });
  ended = true;
  deps.metrics.chatRequests.inc({ model: row.model, status: '200', tenant: row.tenant_id });
  res.end();
}
