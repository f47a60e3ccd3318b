/**
 * A real HTTP server speaking enough of the OpenAI chat completions (and embeddings) protocol to stand in for a
 * remote, paid upstream in tests. It is the one permitted test double: everything else in tests
 * is real. It listens on 127.0.0.1 on an ephemeral port and keeps no state outside its instance.
 *
 * Completions are deterministic: the reply is a fixed text (or the scripted one), one token per
 * whitespace-separated word, cut at `max_tokens` (then `finish_reason` is `length`); prompt tokens
 * are the words of all message contents. A request with `stream: true` is answered with SSE
 * `chat.completion.chunk`s in OpenAI's format (a role chunk, a chunk per word, a finish chunk, the
 * usage chunk when `stream_options.include_usage`, `[DONE]`).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Returns a completion, optionally after a delay (a client disconnect ends the delay). */
export interface SucceedBehaviour {
  kind: 'succeed';
  /** @default 'This is a deterministic reply from the fake upstream.' */
  content?: string;
  /** `'omit'` answers without a `usage` object; an object overrides the counted usage. */
  usage?: 'omit' | { promptTokens: number; completionTokens: number };
  /** @default 'length' when cut at max_tokens, else 'stop' */
  finishReason?: string;
  /** @default 0 */
  delayMs?: number;
  /** `'omit'` answers with an empty `choices` (the usage is still reported). */
  choices?: 'omit';
  /** Embeddings: this `data` instead of one vector per input (a malformed answer). */
  embeddingsData?: unknown[];
  /** Streamed answers: pause this long before each word's chunk. @default 0 */
  chunkDelayMs?: number;
  /**
   * `message.tool_calls` of the answer, sent as given (a malformed value included); the content is
   * then null unless `content` is set, and `finish_reason` `tool_calls`. Streamed: each call in two
   * deltas (its id, type, name and the first half of its arguments; then the rest), by index.
   */
  toolCalls?: unknown;
}

/** A streamed answer that sends `afterWords` word chunks and then drops the connection. */
export interface BreakStreamBehaviour {
  kind: 'break-stream';
  afterWords: number;
}

/** Answers with an OpenAI-shaped error body. */
export interface FailBehaviour {
  kind: 'fail';
  status: number;
  /** Sent as the `Retry-After` header (delta-seconds or an HTTP date). */
  retryAfter?: string;
  /** Sent as the `retry-after-ms` header. */
  retryAfterMs?: string;
  /** `error.code` in the body. @default null */
  code?: string | null;
  /** `error.message` in the body. @default 'fake upstream failure (status N)' */
  message?: string;
  /** `error.type` in the body. @default 'invalid_request_error' for 4xx, 'server_error' for 5xx */
  type?: string;
}

/** Answers with a redirect to `location` (a hostile upstream pointing the worker elsewhere). */
export interface RedirectBehaviour {
  kind: 'redirect';
  location: string;
  /** @default 302 */
  status?: number;
}

/** Reads the request, never answers, and counts the disconnect when the client gives up. */
export interface HangBehaviour {
  kind: 'hang';
}

/** Fails the first `failures` calls after it is set, then succeeds. */
export interface FailThenSucceedBehaviour {
  kind: 'fail-then-succeed';
  failures: number;
  fail: Omit<FailBehaviour, 'kind'>;
  succeed?: Omit<SucceedBehaviour, 'kind'>;
}

export type FakeUpstreamBehaviour = SucceedBehaviour | FailBehaviour | HangBehaviour | FailThenSucceedBehaviour | RedirectBehaviour | BreakStreamBehaviour;

/**
 * A behaviour for every call, or a script: call i (counted from the last `setBehaviour`) gets
 * entry i, and the last entry repeats.
 */
export type FakeUpstreamScript = FakeUpstreamBehaviour | readonly FakeUpstreamBehaviour[];

export interface FakeUpstreamOptions {
  /** When set, requests without `Authorization: Bearer <apiKey>` get 401. @default null */
  apiKey?: string | null;
  /** @default { kind: 'succeed' } */
  behaviour?: FakeUpstreamScript;
}

/** One chat completions (or embeddings) request as the fake received it. */
export interface RecordedRequest {
  body: unknown;
  authorization: string | null;
  /** `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`. */
  path?: string;
}

export interface FakeUpstream {
  /** Base URL ending in `/v1`, for `baseURL`. */
  readonly url: string;
  /** Chat completions requests received so far. */
  readonly calls: number;
  /** Requests whose client disconnected before a response was sent (aborts, timeouts). */
  readonly disconnects: number;
  readonly requests: readonly RecordedRequest[];
  setBehaviour(script: FakeUpstreamScript): void;
  /** Resolves once at least `n` calls have arrived. */
  waitForCalls(n: number): Promise<void>;
  /** Resolves once at least `n` clients have disconnected before their response. */
  waitForDisconnects(n: number): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_CONTENT = 'This is a deterministic reply from the fake upstream.';
/** Fixed so that responses are byte-for-byte deterministic. */
const CREATED_AT = 1_700_000_000;

/** A concrete per-call action, after scripts and fail-then-succeed are resolved. */
type Action = SucceedBehaviour | FailBehaviour | HangBehaviour | RedirectBehaviour | BreakStreamBehaviour;

/** Starts the fake upstream on 127.0.0.1 with an ephemeral port. */
export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const state = createState(options.behaviour ?? { kind: 'succeed' });
  const apiKey = options.apiKey ?? null;
  const pending = new Set<ServerResponse>();

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => sendError(res, 500, { message: String(error) }));
  });

  /** Routes one HTTP request. */
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method === 'GET' && path === '/v1/models') {
      sendJson(res, 200, { object: 'list', data: [] });
      return;
    }
    if (req.method !== 'POST' || (path !== '/v1/chat/completions' && path !== '/v1/embeddings' && path !== '/v1/completions')) {
      sendError(res, 404, { message: `no route ${req.method ?? ''} ${path}`, type: 'invalid_request_error' });
      return;
    }
    const body = await readJson(req);
    const authorization = req.headers.authorization ?? null;
    const action = state.record({ body, authorization, path });
    trackDisconnect(res);
    if (apiKey !== null && authorization !== `Bearer ${apiKey}`) {
      sendError(res, 401, { message: 'Incorrect API key provided', code: 'invalid_api_key', type: 'invalid_request_error' });
      return;
    }
    await perform(action, body, res, path === '/v1/embeddings' ? buildEmbeddings : path === '/v1/completions' ? buildTextCompletion : buildCompletion);
  }

  /** Counts a disconnect when the connection closes before the response ended. */
  function trackDisconnect(res: ServerResponse): void {
    pending.add(res);
    res.on('close', () => {
      pending.delete(res);
      if (!res.writableEnded) {
        state.disconnected();
      }
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    get calls() {
      return state.requests.length;
    },
    get disconnects() {
      return state.disconnects;
    },
    get requests() {
      return state.requests;
    },
    setBehaviour: (script) => state.setScript(script),
    waitForCalls: (n) => state.waitUntil(() => state.requests.length >= n),
    waitForDisconnects: (n) => state.waitUntil(() => state.disconnects >= n),
    close: () => closeServer(server, pending),
  };
}

/** The fake's mutable state: the script, what arrived, and who is waiting for what. */
function createState(initial: FakeUpstreamScript) {
  let script: readonly FakeUpstreamBehaviour[] = toList(initial);
  let callsSinceScript = 0;
  let disconnects = 0;
  const requests: RecordedRequest[] = [];
  const waiters = new Set<{ ready: () => boolean; resolve: () => void }>();

  /** Resolves every waiter whose condition now holds. */
  function notify(): void {
    for (const waiter of waiters) {
      if (waiter.ready()) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }

  return {
    requests,
    get disconnects() {
      return disconnects;
    },
    setScript(next: FakeUpstreamScript): void {
      script = toList(next);
      callsSinceScript = 0;
    },
    /** Records a call and returns what to do with it. */
    record(request: RecordedRequest): Action {
      requests.push(request);
      const action = resolveAction(script, callsSinceScript);
      callsSinceScript += 1;
      notify();
      return action;
    },
    disconnected(): void {
      disconnects += 1;
      notify();
    },
    waitUntil(ready: () => boolean): Promise<void> {
      if (ready()) {
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => waiters.add({ ready, resolve }));
    },
  };
}

/** Normalises a script to a non-empty list. */
function toList(script: FakeUpstreamScript): readonly FakeUpstreamBehaviour[] {
  const list = Array.isArray(script) ? (script as readonly FakeUpstreamBehaviour[]) : [script as FakeUpstreamBehaviour];
  if (list.length === 0) {
    throw new Error('a fake upstream script needs at least one behaviour');
  }
  return list;
}

/** Picks the action for the `index`-th call since the script was set. */
function resolveAction(script: readonly FakeUpstreamBehaviour[], index: number): Action {
  const behaviour = script[Math.min(index, script.length - 1)] ?? { kind: 'succeed' };
  if (behaviour.kind !== 'fail-then-succeed') {
    return behaviour;
  }
  // `index` counts from the last setBehaviour, so "the first K calls" means the first K after it.
  return index < behaviour.failures
    ? { kind: 'fail', ...behaviour.fail }
    : { kind: 'succeed', ...behaviour.succeed };
}

/** Carries out one action on the response. */
async function perform(action: Action, body: unknown, res: ServerResponse, build: (succeed: SucceedBehaviour, body: unknown) => object): Promise<void> {
  switch (action.kind) {
    case 'hang':
      return; // The response stays open until the client leaves or the server closes.
    case 'fail':
      sendFailure(res, action);
      return;
    case 'redirect':
      res.statusCode = action.status ?? 302;
      res.setHeader('Location', action.location);
      res.end();
      return;
    case 'break-stream':
      await sendStream(res, { kind: 'succeed' }, body, action.afterWords);
      return;
    case 'succeed':
      if (action.delayMs) {
        await delayUnlessClosed(action.delayMs, res);
      }
      if (isStreamRequest(body)) {
        await sendStream(res, action, body, null);
        return;
      }
      if (!res.destroyed) {
        sendJson(res, 200, build(action, body));
      }
  }
}

/** Sends a scripted failure with its retry headers. */
function sendFailure(res: ServerResponse, fail: FailBehaviour): void {
  if (fail.retryAfter !== undefined) {
    res.setHeader('Retry-After', fail.retryAfter);
  }
  if (fail.retryAfterMs !== undefined) {
    res.setHeader('retry-after-ms', fail.retryAfterMs);
  }
  sendError(res, fail.status, {
    message: fail.message ?? `fake upstream failure (status ${fail.status})`,
    code: fail.code ?? null,
    type: fail.type ?? (fail.status < 500 ? 'invalid_request_error' : 'server_error'),
  });
}

/** Builds a deterministic chat completion for the request body. */
function buildCompletion(succeed: SucceedBehaviour, body: unknown): object {
  const request = readRequestFields(body);
  const words = (succeed.content ?? DEFAULT_CONTENT).split(/\s+/).filter(Boolean);
  const cut = request.maxTokens !== null && words.length > request.maxTokens;
  const completionWords = cut ? words.slice(0, request.maxTokens ?? 0) : words;
  const counted = { promptTokens: request.promptWords, completionTokens: completionWords.length };
  const usage = succeed.usage === 'omit' ? undefined : (succeed.usage ?? counted);
  return {
    id: 'chatcmpl-fake',
    object: 'chat.completion',
    created: CREATED_AT,
    model: request.model,
    choices: succeed.choices === 'omit' ? [] : [
      {
        index: 0,
        message: {
          role: 'assistant', content: succeed.toolCalls !== undefined && succeed.content === undefined ? null : completionWords.join(' '), refusal: null,
          ...(succeed.toolCalls !== undefined ? { tool_calls: succeed.toolCalls } : {}),
        },
        finish_reason: succeed.finishReason ?? (succeed.toolCalls !== undefined ? 'tool_calls' : cut ? 'length' : 'stop'),
        logprobs: null,
      },
    ],
    ...(usage && {
      usage: {
        prompt_tokens: usage.promptTokens,
        completion_tokens: usage.completionTokens,
        total_tokens: usage.promptTokens + usage.completionTokens,
      },
    }),
  };
}

/** A legacy text completion (`/v1/completions`): the chat answer's text as `choices[0].text`, the prompt's words as prompt tokens. */
function buildTextCompletion(succeed: SucceedBehaviour, body: unknown): object {
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const prompt = typeof fields['prompt'] === 'string' ? fields['prompt'] : '';
  const chat = buildCompletion(succeed, { ...fields, messages: [{ role: 'user', content: prompt }] }) as {
    model: string; choices: Array<{ message: { content: string }; finish_reason: string }>; usage?: unknown;
  };
  return {
    id: 'cmpl-fake', object: 'text_completion', created: CREATED_AT, model: chat.model,
    choices: chat.choices.map((c, index) => ({ index, text: c.message.content, finish_reason: c.finish_reason, logprobs: null })),
    ...(chat.usage ? { usage: chat.usage } : {}),
  };
}

/** Dimensions of the fake's embeddings when the request names none. */
export const FAKE_EMBEDDING_DIMENSIONS = 8;

/**
 * The fake's embedding of one input: `dimensions` values from a hash of the input (the same
 * input always gets the same vector), exactly representable as float32.
 */
export function fakeEmbedding(input: unknown, dimensions = FAKE_EMBEDDING_DIMENSIONS): number[] {
  const text = JSON.stringify(input);
  let h = 2166136261;
  for (const ch of text) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return Array.from({ length: dimensions }, (_, j) => (((h >>> (j % 24)) + j * 37) % 2001 - 1000) / 1024);
}

/**
 * A deterministic embeddings answer: one vector per input (`fakeEmbedding`), base64 when asked,
 * prompt tokens the words of text inputs plus the length of token inputs (`usage` overrides them).
 */
function buildEmbeddings(succeed: SucceedBehaviour, body: unknown): object {
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const raw = fields['input'];
  const inputs: unknown[] = typeof raw === 'string' ? [raw] : Array.isArray(raw) && raw.every((t) => typeof t === 'number') ? [raw] : Array.isArray(raw) ? raw : [];
  const dimensions = typeof fields['dimensions'] === 'number' ? fields['dimensions'] : FAKE_EMBEDDING_DIMENSIONS;
  const base64 = fields['encoding_format'] === 'base64';
  const promptTokens = inputs.reduce<number>((n, input) => n + (typeof input === 'string' ? input.split(/\s+/).filter(Boolean).length : Array.isArray(input) ? input.length : 0), 0);
  const usage = succeed.usage === 'omit' ? undefined : { prompt_tokens: succeed.usage?.promptTokens ?? promptTokens, total_tokens: succeed.usage?.promptTokens ?? promptTokens };
  return {
    object: 'list',
    model: typeof fields['model'] === 'string' ? fields['model'] : 'unknown',
    data: succeed.embeddingsData ?? inputs.map((input, index) => {
      const vector = fakeEmbedding(input, dimensions);
      const embedding = base64 ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
      return { object: 'embedding', index, embedding };
    }),
    ...(usage && { usage }),
  };
}

function isStreamRequest(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as Record<string, unknown>)['stream'] === true;
}

/**
 * Streams the completion `buildCompletion` would return as SSE chunks; with `breakAfter`, drops
 * the connection after that many word chunks (no finish, no usage, no `[DONE]`).
 */
async function sendStream(res: ServerResponse, succeed: SucceedBehaviour, body: unknown, breakAfter: number | null): Promise<void> {
  const completion = buildCompletion(succeed, body) as {
    model: string;
    choices: Array<{ message: { content: string | null; tool_calls?: unknown }; finish_reason: string }>;
    usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  };
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const includeUsage = (fields['stream_options'] as { include_usage?: unknown } | undefined)?.include_usage === true;
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: CREATED_AT, model: completion.model };
  // Each chunk is flushed to the socket before the next step, so a broken stream drops the
  // connection only after the client could have read what came before.
  const send = (data: unknown) => new Promise<void>((resolve) => {
    if (res.destroyed) return resolve();
    res.write(`data: ${JSON.stringify(data)}\n\n`, () => resolve());
  });
  res.statusCode = 200;
  res.setHeader('Content-Type', 'text/event-stream');
  res.flushHeaders();
  const choice = completion.choices[0];
  await send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  const words = (choice?.message.content ?? '').split(' ').filter(Boolean);
  for (const [i, word] of words.entries()) {
    if (breakAfter !== null && i >= breakAfter) {
      res.destroy();
      return;
    }
    if (succeed.chunkDelayMs) await delayUnlessClosed(succeed.chunkDelayMs, res);
    await send({ ...base, choices: [{ index: 0, delta: { content: i === 0 ? word : ` ${word}` }, finish_reason: null }] });
  }
  if (breakAfter !== null) {
    res.destroy();
    return;
  }
  const calls = choice?.message.tool_calls;
  if (Array.isArray(calls)) {
    for (const [index, call] of calls.entries()) {
      const c = (typeof call === 'object' && call !== null ? call : {}) as { id?: unknown; type?: unknown; function?: { name?: unknown; arguments?: unknown } };
      const args = typeof c.function?.arguments === 'string' ? c.function.arguments : '';
      const half = Math.floor(args.length / 2);
      await send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, id: c.id, type: c.type, function: { name: c.function?.name, arguments: args.slice(0, half) } }] }, finish_reason: null }] });
      await send({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, function: { arguments: args.slice(half) } }] }, finish_reason: null }] });
    }
  } else if (calls !== undefined) {
    await send({ ...base, choices: [{ index: 0, delta: { tool_calls: calls }, finish_reason: null }] });
  }
  await send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: choice?.finish_reason ?? 'stop' }] });
  if (includeUsage && completion.usage) await send({ ...base, choices: [], usage: completion.usage });
  if (!res.destroyed) res.end('data: [DONE]\n\n');
}

/** Extracts what the fake needs from a request body, tolerating any shape. */
function readRequestFields(body: unknown): { model: string; maxTokens: number | null; promptWords: number } {
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const messages = Array.isArray(fields['messages']) ? (fields['messages'] as unknown[]) : [];
  const promptWords = messages
    .map((message) => (message as { content?: unknown } | null)?.content)
    .map((content) => (typeof content === 'string' ? content.split(/\s+/).filter(Boolean).length : 0))
    .reduce((sum, count) => sum + count, 0);
  const maxTokens = fields['max_completion_tokens'] ?? fields['max_tokens'];
  return {
    model: typeof fields['model'] === 'string' ? fields['model'] : 'unknown',
    maxTokens: typeof maxTokens === 'number' ? maxTokens : null,
    promptWords,
  };
}

/** Reads and parses a JSON request body (`null` when empty or not JSON). */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return null;
  }
}

/** Waits `ms`, returning early if the client disconnects. */
function delayUnlessClosed(ms: number, res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    res.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Sends an OpenAI-shaped error body. */
function sendError(
  res: ServerResponse,
  status: number,
  error: { message: string; type?: string; code?: string | null },
): void {
  sendJson(res, status, {
    error: { message: error.message, type: error.type ?? 'server_error', param: null, code: error.code ?? null },
  });
}

/** Sends a JSON body, unless the response is already over. */
function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) {
    return;
  }
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
}

/** Ends hanging responses, drops keep-alive connections and stops listening. */
function closeServer(server: ReturnType<typeof createServer>, pending: Set<ServerResponse>): Promise<void> {
  for (const res of pending) {
    res.destroy();
  }
  return new Promise<void>((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}
