/**
 * `sluice batch submit|status|results|errors|cancel|list`: the commands that take several API
 * calls (upload + create + poll, batch + file content), so their handlers `run` instead of making
 * the one call of the other groups.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { intOpt, PAGE_OPTIONS, pageOf, str, type CommandSpec } from './args.js';
import { failureLine, unreachableLine, type ApiRequest, type CliDeps, type Connection, type Handlers, type RunContext } from './http.js';

export type BatchAction =
  | { kind: 'batch.submit'; file: string; model: string | null; maxTokens: number | null; wait: boolean }
  | { kind: 'batch.status'; id: string }
  | { kind: 'batch.results'; id: string; output: string | null }
  | { kind: 'batch.errors'; id: string; output: string | null }
  | { kind: 'batch.cancel'; id: string }
  | { kind: 'batch.list'; limit: number | null; after: string | null };

const OUTPUT_OPTION = { output: { type: 'string', short: 'o', arg: 'FILE', help: 'write to this file' } } as const;

export const batchCommands: readonly CommandSpec<BatchAction>[] = [
  {
    path: ['batch', 'submit'],
    synopsis: 'FILE [--model M] [--max-tokens N] [--wait]',
    summary: 'upload a JSONL batch file (or a plain file, one prompt a line) and start the batch; --wait shows progress',
    options: {
      model: { type: 'string', arg: 'M', help: 'model for a plain prompts file, or for lines whose body has none' },
      'max-tokens': { type: 'string', arg: 'N', help: 'max completion tokens per converted prompt' },
      wait: { type: 'boolean', help: 'poll with a progress bar (done/failed/total, rate, ETA) until the batch ends' },
    },
    args: ['FILE'],
    build: (v, [file]) => ({ kind: 'batch.submit', file: file as string, model: str(v, 'model') ?? null, maxTokens: intOpt(v, 'max-tokens', 1) ?? null, wait: v.wait === true }),
  },
  { path: ['batch', 'status'], synopsis: 'BATCH_ID', summary: 'status and request counts of a batch', options: {}, args: ['BATCH_ID'], build: (_v, [id]) => ({ kind: 'batch.status', id: id as string }) },
  {
    path: ['batch', 'results'], synopsis: 'BATCH_ID [-o FILE]', summary: 'the output file of a batch (JSONL), to stdout or a file', options: OUTPUT_OPTION, args: ['BATCH_ID'],
    build: (v, [id]) => ({ kind: 'batch.results', id: id as string, output: str(v, 'output') ?? null }),
  },
  {
    path: ['batch', 'errors'], synopsis: 'BATCH_ID [-o FILE]', summary: 'the error file of a batch, or its validation errors', options: OUTPUT_OPTION, args: ['BATCH_ID'],
    build: (v, [id]) => ({ kind: 'batch.errors', id: id as string, output: str(v, 'output') ?? null }),
  },
  { path: ['batch', 'cancel'], synopsis: 'BATCH_ID', summary: 'cancel a batch: no new lines start, partial output is written', options: {}, args: ['BATCH_ID'], build: (_v, [id]) => ({ kind: 'batch.cancel', id: id as string }) },
  {
    path: ['batch', 'list'], synopsis: '[--limit N] [--after ID]', summary: 'batches of your tenant, newest first', options: PAGE_OPTIONS, args: [],
    build: (v) => ({ kind: 'batch.list', ...pageOf(v) }),
  },
];

interface BatchJson {
  id: string;
  status: string;
  input_file_id: string;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  request_counts: { total: number; completed: number; failed: number };
  errors: { data: Array<{ line: number | null; code: string; message: string }> } | null;
}

const FINAL = ['completed', 'failed', 'cancelled', 'expired'];

/**
 * The batch input lines of a file: JSONL batch lines as they are (a missing `body.model` filled
 * from `--model`), or a plain file of one prompt per line, converted. Pure.
 */
export function toBatchJsonl(text: string, model: string | null, maxTokens: number | null): string {
  const lines = text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '');
  const parsed = lines.map((l) => {
    try {
      const v: unknown = JSON.parse(l);
      return typeof v === 'object' && v !== null && 'custom_id' in v ? (v as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  });
  if (lines.length > 0 && parsed.every((p) => p !== null)) {
    return parsed.map((p) => {
      const line = p as Record<string, unknown>;
      const body = line.body;
      if (model && body && typeof body === 'object' && (body as Record<string, unknown>).model === undefined) (body as Record<string, unknown>).model = model;
      return JSON.stringify(line);
    }).join('\n') + '\n';
  }
  if (!model) throw new Error('a plain prompts file (one prompt a line) needs --model');
  return lines.map((prompt, i) => JSON.stringify({
    custom_id: `line-${i + 1}`, method: 'POST', url: '/v1/chat/completions',
    body: { model, messages: [{ role: 'user', content: prompt }], ...(maxTokens ? { max_tokens: maxTokens } : {}) },
  })).join('\n') + '\n';
}

const PROGRESS_FORMAT = '[{bar}] {value}/{total} done, {failed} failed · {rate}/s · ETA {eta_formatted} · {status}';

/** A stream whose lines go to `line`, one call each (empty ones dropped). */
function lineStream(line: (text: string) => void): Writable {
  let pending = '';
  return new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      pending += chunk.toString();
      for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
        if (i > 0) line(pending.slice(0, i));
        pending = pending.slice(i + 1);
      }
      callback();
    },
  });
}

/**
 * The bar of `batch submit --wait` (done/failed/total, rate, ETA): redrawn in place on a TTY
 * (`deps.progress`); otherwise a line on stderr every 5 s and one at the end.
 */
function progressBar(deps: CliDeps): cliProgress.SingleBar {
  return new cliProgress.SingleBar({
    stream: deps.progress ?? lineStream(deps.err),
    noTTYOutput: true,
    notTTYSchedule: 5000,
    format: PROGRESS_FORMAT,
    barCompleteChar: '#',
    barIncompleteChar: '-',
    barsize: 30,
    emptyOnZero: true,
    // The ETA is 'NULL' or 'INF' until lines finish at a measurable rate.
    formatTime: (t, options, roundTo) => (typeof t === 'number' && Number.isFinite(t) ? cliProgress.Format.TimeFormat(t, options, roundTo) : '?'),
  });
}

function progressOf(b: BatchJson, started: number): { done: number; total: number; payload: { failed: number; rate: string; status: string } } {
  const { total, completed, failed } = b.request_counts;
  const seconds = (Date.now() - started) / 1000;
  const done = completed + failed;
  return { done, total, payload: { failed, rate: (seconds > 0 ? done / seconds : 0).toFixed(1), status: b.status } };
}

/** An API call that failed or got no answer; its message is the line to print. */
class ApiCallError extends Error {}

/** The batch API calls of one command, with its connection; failures throw {@link ApiCallError}. */
function client(conn: Connection, deps: CliDeps) {
  const headers = { authorization: `Bearer ${conn.key}`, 'user-agent': 'sluice-cli' };
  async function send(method: ApiRequest['method'], p: string, init: { headers?: Record<string, string>; body?: string | FormData } = {}): Promise<string> {
    let res: Response;
    let text: string;
    try {
      res = await deps.fetch(`${conn.url}${p}`, { method, ...init, headers: { ...headers, ...init.headers } });
      text = await res.text();
    } catch (err) {
      throw new ApiCallError(unreachableLine(conn, err));
    }
    if (res.ok) return text;
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch { /* not JSON: failureLine quotes the text */ }
    throw new ApiCallError(failureLine({ method, path: p }, res.status, body, text));
  }
  return {
    async call<T>(method: ApiRequest['method'], p: string, body?: unknown): Promise<T> {
      const init = body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
      return JSON.parse(await send(method, p, init)) as T;
    },
    upload: async (form: FormData): Promise<{ id: string }> => JSON.parse(await send('POST', '/v1/files', { body: form })) as { id: string },
    content: (fileId: string): Promise<string> => send('GET', `/v1/files/${encodeURIComponent(fileId)}/content`),
  };
}

function printBatch(b: BatchJson, json: boolean, out: (line: string) => void): void {
  if (json) return out(JSON.stringify(b, null, 2));
  const c = b.request_counts;
  out(`${b.id}  ${b.status}  ${c.completed + c.failed}/${c.total} done, ${c.failed} failed`);
  if (b.output_file_id) out(`  output: ${b.output_file_id}`);
  if (b.error_file_id) out(`  errors: ${b.error_file_id}`);
  for (const e of b.errors?.data ?? []) out(`  line ${e.line ?? '-'}: ${e.code}: ${e.message}`);
}

/** Runs `fn`; an API or file error prints one line and exits 1. */
function guarded<A>(fn: (action: A, ctx: RunContext, api: ReturnType<typeof client>) => Promise<number>) {
  return {
    async run(action: A, ctx: RunContext): Promise<number> {
      try {
        return await fn(action, ctx, client(ctx.conn, ctx.deps));
      } catch (err) {
        // An API failure's line, or a local one (the input file cannot be read or converted).
        ctx.deps.err(`sluice: ${err instanceof Error ? err.message : String(err)}`);
        return 1;
      }
    },
  };
}

async function fetchFile(a: { id: string; output: string | null }, which: 'output' | 'error', { deps }: RunContext, api: ReturnType<typeof client>): Promise<number> {
  const b = await api.call<BatchJson>('GET', `/v1/batches/${encodeURIComponent(a.id)}`);
  const fileId = which === 'output' ? b.output_file_id : b.error_file_id;
  if (!fileId) {
    deps.err(`sluice: batch ${b.id} (${b.status}) has no ${which} file`);
    for (const e of b.errors?.data ?? []) deps.out(`line ${e.line ?? '-'}: ${e.code}: ${e.message}`);
    return which === 'output' ? 1 : 0;
  }
  const text = await api.content(fileId);
  if (a.output) {
    await writeFile(a.output, text);
    deps.err(`sluice: wrote ${Buffer.byteLength(text)} bytes (${text.split('\n').filter(Boolean).length} lines) to ${a.output}`);
  } else for (const l of text.split('\n')) if (l) deps.out(l);
  return 0;
}

export const batchHandlers: Handlers<BatchAction> = {
  'batch.submit': guarded(async (a, { json, deps }, api) => {
    const jsonl = toBatchJsonl(await readFile(a.file, 'utf8'), a.model, a.maxTokens);
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([jsonl]), path.basename(a.file));
    const file = await api.upload(form);
    let b = await api.call<BatchJson>('POST', '/v1/batches', { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    deps.err(`sluice: batch ${b.id} created from ${file.id}`);
    if (!a.wait) {
      printBatch(b, json, deps.out);
      return 0;
    }
    const started = Date.now();
    const bar = progressBar(deps);
    const first = progressOf(b, started);
    bar.start(first.total, first.done, first.payload);
    try {
      while (!FINAL.includes(b.status)) {
        await new Promise((r) => setTimeout(r, deps.pollMs ?? 1000));
        b = await api.call<BatchJson>('GET', `/v1/batches/${encodeURIComponent(b.id)}`);
        const p = progressOf(b, started);
        bar.setTotal(p.total);
        bar.update(p.done, p.payload);
      }
    } finally {
      bar.stop();
    }
    printBatch(b, json, deps.out);
    return b.status === 'completed' ? 0 : 1;
  }),
  'batch.status': guarded(async (a, { json, deps }, api) => {
    printBatch(await api.call<BatchJson>('GET', `/v1/batches/${encodeURIComponent(a.id)}`), json, deps.out);
    return 0;
  }),
  'batch.cancel': guarded(async (a, { json, deps }, api) => {
    printBatch(await api.call<BatchJson>('POST', `/v1/batches/${encodeURIComponent(a.id)}/cancel`), json, deps.out);
    return 0;
  }),
  'batch.results': guarded((a, ctx, api) => fetchFile(a, 'output', ctx, api)),
  'batch.errors': guarded((a, ctx, api) => fetchFile(a, 'error', ctx, api)),
  'batch.list': guarded(async (a, { json, deps }, api) => {
    const q = new URLSearchParams();
    if (a.limit !== null) q.set('limit', String(a.limit));
    if (a.after !== null) q.set('after', a.after);
    const list = await api.call<{ data: BatchJson[]; has_more: boolean }>('GET', `/v1/batches${q.size ? `?${q}` : ''}`);
    if (json) deps.out(JSON.stringify(list, null, 2));
    else if (list.data.length === 0) deps.out('No batches.');
    else for (const b of list.data) deps.out(`${b.id}  ${b.status.padEnd(11)}  ${b.request_counts.completed + b.request_counts.failed}/${b.request_counts.total}  ${new Date(b.created_at * 1000).toISOString()}`);
    const last = list.data.at(-1);
    if (!json && list.has_more && last) deps.out(`More batches: --after ${last.id}`);
    return 0;
  }),
};
