/**
 * The `fetch` the OpenAI-compatible backend calls its upstream with, over `node:http(s)` instead of
 * the global fetch, so that three things hold for every call:
 * - **no redirects**: `node:http` never follows one; a 3xx comes back as the answer (and the backend
 *   fails that attempt), so a public upstream cannot send the worker to 169.254.169.254;
 * - **the checked address is the connected address**: the socket resolves its host through
 *   {@link guardedLookup} (the guard webhook deliveries use), which refuses a non-public address
 *   unless allowed, so a DNS answer that changes after the pre-call check cannot reach inside;
 * - **a response size cap**: the body is read up to `maxResponseBytes` and the call fails with
 *   {@link ResponseTooLargeError} past it (a declared `Content-Length` over the cap fails at once).
 * A non-streamed body is buffered, so the caller's abort signal
 * (the client's timeout, the activity's cancellation) bounds the whole exchange.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { AddressRefusedError, guardedLookup, isAllowedHost, normaliseHost, privateRangeOf } from '../net/address-guard.js';

/** An upstream answered with more bytes than the configured cap. */
export class ResponseTooLargeError extends Error {
  override readonly name = 'ResponseTooLargeError';
  constructor(readonly limitBytes: number) {
    super(`upstream response exceeded ${limitBytes} bytes`);
  }
}

export interface PinnedFetchOptions {
  /** Hosts or addresses allowed although non-public (`*` = all); see `SLUICE_ALLOW_PRIVATE_UPSTREAMS`. */
  allow: readonly string[];
  /** Largest response body read, in bytes. */
  maxResponseBytes: number;
}

/** Statuses whose response has no body (the `Response` constructor refuses one). */
const NULL_BODY = new Set([101, 204, 205, 304]);

/** A guarded `fetch` and the keep-alive connections it holds. */
export interface PinnedFetch {
  fetch: typeof fetch;
  /** Closes the kept-alive connections (the backend's `close`). */
  close(): void;
}

/**
 * Creates the guarded, capped, non-redirecting `fetch` (see the module comment). Connections are
 * kept alive per instance; a reused socket stays on the address that was checked when it opened.
 */
export function createPinnedFetch(options: PinnedFetchOptions): PinnedFetch {
  const lookup = guardedLookup(options.allow);
  const agents = {
    'http:': new http.Agent({ keepAlive: true }),
    'https:': new https.Agent({ keepAlive: true }),
  };
  const pinnedFetch: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError('upstream URL must be http or https');
    const host = normaliseHost(url.hostname);
    // Node connects to an IP literal without calling `lookup`: judge it here.
    const range = net.isIP(host) !== 0 ? privateRangeOf(host) : null;
    if (range !== null && !isAllowedHost(options.allow, host)) throw new AddressRefusedError(`${host} is in ${range}`);
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((value, name) => {
      headers[name] = value;
    });
    const body = await bodyBytes(init?.body);
    if (body !== null) headers['content-length'] = String(body.byteLength);
    const signal = init?.signal ?? null;
    signal?.throwIfAborted();
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise<Response>((resolve, reject) => {
      const req = transport.request(url, { method: init?.method ?? 'GET', headers, agent: agents[url.protocol as 'http:' | 'https:'], lookup }, (res) => {
        const status = res.statusCode ?? 0;
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > options.maxResponseBytes) {
          req.destroy(new ResponseTooLargeError(options.maxResponseBytes));
          return;
        }
        const responseHeaders = () => {
          const h = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
          return h;
        };
        // A streamed answer (`stream: true`) is handed on as it arrives, under the same size cap; a
        // connection that drops before the end errors the body, so the caller sees the failure.
        if (/^text\/event-stream/i.test(String(res.headers['content-type'] ?? ''))) {
          let streamed = 0;
          let ended = false;
          const body = new ReadableStream<Uint8Array>({
            start(controller) {
              res.on('data', (chunk: Buffer) => {
                streamed += chunk.byteLength;
                if (streamed > options.maxResponseBytes) {
                  const error = new ResponseTooLargeError(options.maxResponseBytes);
                  controller.error(error);
                  req.destroy(error);
                  return;
                }
                controller.enqueue(new Uint8Array(chunk));
              });
              res.on('end', () => {
                ended = true;
                controller.close();
              });
              res.on('close', () => {
                if (!ended) controller.error(new Error('upstream stream ended before its end'));
              });
            },
            cancel() {
              req.destroy();
            },
          });
          resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers: responseHeaders() }));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.byteLength;
          if (size > options.maxResponseBytes) {
            req.destroy(new ResponseTooLargeError(options.maxResponseBytes));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', reject);
        res.on('end', () => {
          resolve(new Response(NULL_BODY.has(status) ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage ?? '', headers: responseHeaders() }));
        });
      });
      const onAbort = () => req.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('close', () => signal?.removeEventListener('abort', onAbort));
      req.on('error', reject);
      req.end(body ?? undefined);
    });
  };
  return {
    fetch: pinnedFetch,
    close: () => {
      agents['http:'].destroy();
      agents['https:'].destroy();
    },
  };
}

/** The request body as bytes (the client sends JSON strings; a stream is not expected). */
async function bodyBytes(body: RequestInit['body'] | undefined): Promise<Uint8Array | null> {
  if (body === undefined || body === null) return null;
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  return new Uint8Array(await new Response(body).arrayBuffer());
}
