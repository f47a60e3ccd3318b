/**
 * `stream: true` answers of `POST /v1/chat/completions`, and their resume route
 * `GET /v1/chat/completions/{id}/stream` (`Last-Event-ID`): server-sent `chat.completion.chunk`
 * events in OpenAI's format. The text comes from the stream channel (`stream_chunks`, woken by
 * `LISTEN`); the end (finish reason, usage, or an error) from the request's workflow, the source
 * of truth for the completion, billing and audit. Every event has an ID, so a client that lost
 * its connection resumes on any API process.
 *
 * Event IDs: `0` the role chunk; a chunk's row ID for content; `<last row ID>-<x>` for the end
 * (`c` remaining content, `f` finish reason, `u` usage, `e` an error).
 */
import type { Response } from 'express';
import type { Client } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import type { RequestRow } from '../../db/tables/index.js';
import { closeStream } from '../../db/repositories/streams.js';
import type { ChatCompletion } from '../../contracts/chat.js';
import { chatWorkflowId } from '../../contracts/ids.js';
import type { chatRequest } from '../../workflows/chat-request.js';
import type { Metrics } from '../../runtime/metrics.js';
import type { Logger } from '../../runtime/logger.js';
import { HttpError, badRequest, fromWorkflowFailure } from '../errors.js';
import { requestCacheStatus } from '../../db/repositories/cache.js';
import { CACHE_HEADER } from '../../domain/cache-eligibility.js';
import type { StreamHub } from '../stream-hub.js';
import { followChunks } from '../stream-follow.js';

/** The header carrying a streamed request's job ID (`GET /v1/jobs/{id}`, the resume route). */
export const JOB_ID_HEADER = 'x-sluice-job-id';

/**
 * Request header `X-Sluice-Stream-Detach: true`: the generation outlives its connection (it runs to
 * its end and is billed), so a client that lost its connection resumes it. Without it, a client that
 * disconnects cancels the request.
 */
export const DETACH_HEADER = 'x-sluice-stream-detach';

export interface StreamDeps {
  db: Db;
  temporal: Client;
  metrics: Metrics;
  log: Logger;
  streams: StreamHub;
}

/** Where a stream (re)starts: after the event with this ID. */
export interface StreamCursor {
  /** Row ID of the last content chunk the client has (0: none). */
  afterChunk: number;
  /** End events the client already has, in order `c`, `f`, `u`. */
  endsSeen: number;
  /** Whether the role chunk (`0`) must be sent. */
  sendRole: boolean;
}

const END_ORDER = ['c', 't', 'f', 'u'] as const;

/** The cursor of a `Last-Event-ID` (absent: from the start); 400 on anything else. */
export function cursorOf(lastEventId: string | undefined): StreamCursor {
  if (lastEventId === undefined || lastEventId === '') return { afterChunk: 0, endsSeen: 0, sendRole: true };
  const m = /^(\d{1,15})(?:-([ctfu]))?$/.exec(lastEventId);
  if (!m) throw badRequest('Last-Event-ID must be an event ID of this stream', 'Last-Event-ID', 'invalid_value');
  const end = m[2] as (typeof END_ORDER)[number] | undefined;
  return { afterChunk: Number(m[1]), endsSeen: end === undefined ? 0 : END_ORDER.indexOf(end) + 1, sendRole: false };
}

type Outcome = { ok: true; completion: ChatCompletion } | { ok: false; err: unknown };

/**
 * Answers `row`'s request as an event stream from `cursor`. Headers are sent with the first event:
 * a request that fails before any text (a refused quota, every deployment down) gets the same HTTP
 * error a non-streamed request gets. A client that disconnects before the end closes the stream
 * (its generation stops at the next chunk) and cancels the workflow.
 */
export async function streamCompletion(
  deps: StreamDeps, res: Response, row: RequestRow, cursor: StreamCursor,
  options: {
    includeUsage: boolean;
    cancelOnDisconnect: boolean;
    /** `performance.now()` when a new request arrived: its first content chunk observes `sluice_stream_ttft_seconds`. Absent on a resume or a repeated request. */
    receivedAt?: number;
  },
): Promise<void> {
  const { includeUsage } = options;
  let ttftPending = options.receivedAt !== undefined;
  const firstContent = () => {
    if (!ttftPending) return;
    ttftPending = false;
    deps.metrics.ttft.observe({ model }, (performance.now() - (options.receivedAt ?? 0)) / 1000);
  };
  const handle = deps.temporal.workflow.getHandle<typeof chatRequest>(chatWorkflowId(row.id));
  let outcome: Outcome | null = null;
  const result: Promise<ChatCompletion> = row.status === 'succeeded' && row.result !== null ? Promise.resolve(row.result as ChatCompletion) : handle.result();
  const settled = result.then(
    (completion) => { outcome = { ok: true, completion }; },
    (err: unknown) => { outcome = { ok: false, err }; },
  );
  let ended = false;
  let gone = false;
  res.on('close', () => {
    if (ended) return;
    gone = true;
    if (!options.cancelOnDisconnect) return;
    // The client left mid-stream: stop the generation (its next chunk insert raises) and cancel
    // the request; the workflow records what was generated and releases the reservation.
    void (async () => {
      try {
        await closeStream(deps.db, row.id);
        await handle.cancel();
      } catch (err) {
        deps.log.warn('closing a stream failed', { request_id: row.id, error: err instanceof Error ? err.message : String(err) });
      }
    })();
  });

  const id = `chatcmpl-${row.id}`;
  const created = Math.floor(row.created_at.getTime() / 1000);
  // The model that generates the text (an experiment variant's, not necessarily the one asked
  // for), from its first chunk or else the completion: every event of a stream shows the same one.
  let model = row.model;
  const chunk = (delta: Record<string, unknown>, finishReason: string | null) => ({
    id, object: 'chat.completion.chunk', created, model, system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  });
  const send = (eventId: string, data: unknown) => {
    res.write(`id: ${eventId}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  // `x-sluice-cache`: the lookup records hit or miss before any text (a hit's one chunk, or the
  // first generated one) exists, so the row read just before the headers go has it.
  const cacheHeader = async () => {
    if (res.headersSent) return;
    const cache = await requestCacheStatus(deps.db, row.id, row.tenant_id);
    if (cache !== null && !res.headersSent) res.setHeader(CACHE_HEADER, cache);
  };
  const open = () => {
    if (res.headersSent) return;
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('X-Accel-Buffering', 'no');
    res.setHeader(JOB_ID_HEADER, row.id);
    res.flushHeaders();
    if (cursor.sendRole) send('0', chunk({ role: 'assistant', content: '', refusal: null }, null));
  };

  const followed = await followChunks(deps, row.id, settled, { finished: () => outcome !== null, gone: () => gone }, async (r) => {
    if (r.model !== null) model = r.model;
    if (r.id > cursor.afterChunk) {
      await cacheHeader();
      open();
      if (r.content !== '') firstContent();
      send(String(r.id), chunk({ content: r.content }, null));
    }
  });
  if (followed === null) return;
  const { last, text } = followed;
  const end = outcome as unknown as Outcome;
  if (!end.ok) {
    const mapped = fromWorkflowFailure(end.err) ?? new HttpError('server_error', 'The request failed', 'internal_error');
    deps.metrics.chatRequests.inc({ model: row.model, status: String(mapped.status), tenant: row.tenant_id });
    if (!res.headersSent) {
      ended = true;
      throw mapped;
    }
    if (mapped.detail) deps.log.warn('stream ended with an error', { request_id: row.id, detail: mapped.detail });
    send(`${last}-e`, mapped.toJSON());
    ended = true;
    res.end();
    return;
  }
  const completion = end.completion;
  const choice = completion.choices[0];
  const content = choice?.message.content ?? '';
  model = completion.model;
  await cacheHeader();
  open();
  const ends: Array<[string, unknown]> = [];
  // No channel (or a backend that held text back): the rest of the text, from the completion.
  ends.push(['c', content.startsWith(text) && content.length > text.length ? chunk({ content: content.slice(text.length) }, null) : null]);
  // No chunk carried text (no stream channel, or the backend held it all back): it arrives now.
  firstContent();
  // Tool calls, whole, in OpenAI's delta format (one entry per call, by index): the SDKs join them.
  const calls = choice?.message.tool_calls ?? [];
  ends.push(['t', calls.length > 0 ? chunk({ tool_calls: calls.map((c, index) => ({ index, id: c.id, type: c.type, function: c.function })) }, null) : null]);
  ends.push(['f', chunk({}, choice?.finish_reason ?? 'stop')]);
  ends.push(['u', includeUsage ? { id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, choices: [], usage: completion.usage } : null]);
  ends.forEach(([suffix, data], i) => {
    if (data !== null && i >= cursor.endsSeen) send(`${last}-${suffix}`, data);
  });
  res.write('data: [DONE]\n\n');
  ended = true;
  deps.metrics.chatRequests.inc({ model: row.model, status: '200', tenant: row.tenant_id });
  res.end();
}
