/**
 * The CLI's side of the HTTP API: the connection, the injected effects, and the one-call runner
 * that every command but `batch` goes through (one request, then print the body or the error).
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { UsageError } from './args.js';

/** Where, and as whom, the CLI talks to the API. */
export interface Connection {
  /** Base URL of the API, without `/v1` (`--url` or `SLUICE_URL`). @default http://localhost:8080 */
  url: string;
  /** Bearer API key (`--key` or `SLUICE_API_KEY`). Required. */
  key: string;
}

/** Default API base URL. */
export const DEFAULT_URL = 'http://localhost:8080';

/** Injected effects of running a command. */
export interface CliDeps {
  fetch: typeof fetch;
  /** Writes one line (no trailing newline) to standard output. */
  out(line: string): void;
  /** Writes one line (no trailing newline) to standard error. */
  err(line: string): void;
  /** A terminal to draw progress bars on (stderr when it is a TTY); absent: progress is printed as lines. */
  progress?: NodeJS.WritableStream | null;
  /** Poll interval of `batch submit --wait`. @default 1000 */
  pollMs?: number;
}

/** What a handler runs with: the connection, `--json`, and the effects. */
export interface RunContext {
  conn: Connection;
  json: boolean;
  deps: CliDeps;
}

/** One HTTP call to the API. */
export interface ApiRequest {
  method: 'GET' | 'POST' | 'PATCH';
  /** Path under the base URL, starting with `/v1/`. */
  path: string;
  query?: Readonly<Record<string, string | number | null | undefined>>;
  body?: unknown;
}

/** A command that is one API call: the request, and how a successful response prints. */
export interface CallHandler<A> {
  request(action: A): ApiRequest;
  /** Prints a successful response. */
  render(body: unknown, action: A, deps: CliDeps): void;
  /** Non-2xx statuses that carry a result rather than an error (audit verify: 409 = broken chain). */
  resultStatuses?: readonly number[];
  /** Exit code for a result, also with `--json`. @default 0 */
  exitCode?(body: unknown): number;
  /** A streamed download: a 2xx body goes to this file as it arrives instead of being parsed. */
  download?(action: A): string;
}

/** A command that makes several calls (`batch submit --wait`); returns the exit code. */
export interface RunHandler<A> {
  run(action: A, ctx: RunContext): Promise<number>;
}

export type Handler<A> = CallHandler<A> | RunHandler<A>;

/** A list response of the API. */
export interface ListJson<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
}

/** The OpenAI-shaped error body of the API. */
export interface ApiErrorJson {
  error: { message: string; type?: string | null; param?: string | null; code?: string | null };
}

/** A path segment from a user-given ID. */
export const seg = encodeURIComponent;

/** `--url` / `SLUICE_URL` as a base URL without a trailing slash or `/v1`. */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--url / SLUICE_URL is not a URL: '${raw}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url / SLUICE_URL must be http or https: '${raw}'`);
  // The API's paths start with /v1; accept a base URL given as the OpenAI SDK's baseURL too.
  return url.href.replace(/\/+$/, '').replace(/\/v1$/, '');
}

function urlOf(conn: Connection, req: ApiRequest): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== null && v !== undefined) params.set(k, String(v));
  const qs = params.toString();
  return `${conn.url}${req.path}${qs ? `?${qs}` : ''}`;
}

function isApiError(body: unknown): body is ApiErrorJson {
  if (typeof body !== 'object' || body === null || !('error' in body)) return false;
  const e = (body as { error: unknown }).error;
  return typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string';
}

/** The line for a call that got no answer (without the `sluice: ` prefix). */
export function unreachableLine(conn: Connection, err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `cannot reach the API at ${conn.url} (${err instanceof Error ? err.message : String(err)}${cause})`;
}

/**
 * The line for a failed call (without the `sluice: ` prefix): the API's error with the HTTP
 * status, type, code and param, or the start of a body that is not one. `body` is the parsed JSON,
 * undefined when it was not JSON.
 */
export function failureLine(req: Pick<ApiRequest, 'method' | 'path'>, status: number, body: unknown, text: string): string {
  if (!isApiError(body)) return `${req.method} ${req.path} failed with HTTP ${status}: ${text.slice(0, 200)}`;
  const e = body.error;
  const detail = [`HTTP ${status}`, e.type, e.code ? `code ${e.code}` : null, e.param ? `param ${e.param}` : null].filter(Boolean).join(', ');
  return `error: ${e.message} (${detail})`;
}

/** Makes the handler's one call and prints the result; returns the exit code. */
export async function runCall<A>(handler: CallHandler<A>, action: A, { conn, json, deps }: RunContext): Promise<number> {
  const req = handler.request(action);
  const headers: Record<string, string> = { authorization: `Bearer ${conn.key}`, accept: 'application/json', 'user-agent': 'sluice-cli' };
  if (req.body !== undefined) headers['content-type'] = 'application/json';

  let res: Response;
  let text: string;
  try {
    res = await deps.fetch(urlOf(conn, req), { method: req.method, headers, body: req.body === undefined ? undefined : JSON.stringify(req.body) });
    if (handler.download && res.ok && res.body) {
      const file = handler.download(action);
      const counter = createWriteStream(file);
      await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), counter);
      deps.err(`sluice: wrote ${counter.bytesWritten} bytes to ${file}`);
      return 0;
    }
    text = await res.text();
  } catch (err) {
    deps.err(`sluice: ${unreachableLine(conn, err)}`);
    return 1;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    deps.err(`sluice: ${req.method} ${req.path} answered HTTP ${res.status} with a non-JSON body: ${text.slice(0, 200)}`);
    return 1;
  }

  const isResult = res.ok || (handler.resultStatuses?.includes(res.status) === true && !isApiError(body));
  if (!isResult) {
    deps.err(`sluice: ${failureLine(req, res.status, body, text)}`);
    const retryAfter = res.headers.get('retry-after');
    if (retryAfter !== null) deps.err(`sluice: retry after ${retryAfter} s`);
    return 1;
  }

  if (json) deps.out(JSON.stringify(body, null, 2));
  else handler.render(body, action, deps);
  return handler.exitCode?.(body) ?? 0;
}

/** A group's handler table: one per action kind, so a missing handler is a compile error. */
export type Handlers<A extends { kind: string }> = { [K in A['kind']]: Handler<Extract<A, { kind: K }>> };
