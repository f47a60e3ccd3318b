/**
 * `sluice batch …`: the commands that take several API calls (upload + create + poll, batch +
 * file content), kept out of the one-call handler table of `sluice.ts`. Same injected effects.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export type BatchOp =
  | { op: 'submit'; file: string; model: string | null; maxTokens: number | null; wait: boolean }
  | { op: 'status'; id: string }
  | { op: 'results'; id: string; output: string | null }
  | { op: 'errors'; id: string; output: string | null }
  | { op: 'cancel'; id: string }
  | { op: 'list'; limit: number | null; after: string | null };

export interface BatchCliDeps {
  fetch: typeof fetch;
  out(line: string): void;
  err(line: string): void;
  /** Rewrites the progress line in place (a TTY); null prints a line now and then. @default null */
  progress?: ((line: string) => void) | null;
  /** Poll interval of `--wait`. @default 1000 */
  pollMs?: number;
}

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

class ApiCallError extends Error {}

/**
 * The batch input lines of a file: JSONL batch lines as they are (a missing `body.model` filled
 * from `--model`), or a plain file of one prompt per line, converted. Pure.
 */
export function toBatchJsonl(text: string, model: string | null, maxTokens: number | null): string {
  const lines = text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '');
  const parsed = lines.map((l) => {
    try {
      const v: unknown = JSON.parse(l);
      return typeof v === 'object' && v !== null && 'custom_id' in v ? (v as Record<string, any>) : null;
    } catch {
      return null;
    }
  });
  if (lines.length > 0 && parsed.every((p) => p !== null)) {
    return parsed.map((p) => {
      const line = p as Record<string, any>;
      if (model && line.body && typeof line.body === 'object' && line.body.model === undefined) line.body.model = model;
      return JSON.stringify(line);
    }).join('\n') + '\n';
  }
  if (!model) throw new Error('a plain prompts file (one prompt a line) needs --model');
  return lines.map((prompt, i) => JSON.stringify({
    custom_id: `line-${i + 1}`, method: 'POST', url: '/v1/chat/completions',
    body: { model, messages: [{ role: 'user', content: prompt }], ...(maxTokens ? { max_tokens: maxTokens } : {}) },
  })).join('\n') + '\n';
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  return s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`;
}

/** One progress line: bar, done/failed/total, rate, ETA. Pure. */
export function progressLine(b: Pick<BatchJson, 'status' | 'request_counts'>, elapsedSeconds: number, width = 30): string {
  const { total, completed, failed } = b.request_counts;
  const done = completed + failed;
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  const rate = elapsedSeconds > 0 ? done / elapsedSeconds : 0;
  const eta = rate > 0 ? (total - done) / rate : Number.POSITIVE_INFINITY;
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} done, ${failed} failed · ${rate.toFixed(1)}/s · ETA ${duration(eta)} · ${b.status}`;
}

export async function runBatchOp(op: BatchOp, conn: { url: string; key: string }, json: boolean, deps: BatchCliDeps): Promise<number> {
  const headers = { authorization: `Bearer ${conn.key}`, 'user-agent': 'sluice-cli' };
  async function call<T>(method: string, p: string, body?: unknown): Promise<T> {
    const res = await deps.fetch(`${conn.url}${p}`, {
      method, headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { error: { message: string } }).error.message;
      } catch { /* not JSON */ }
      throw new ApiCallError(`${message} (HTTP ${res.status})`);
    }
    return JSON.parse(text) as T;
  }
  async function content(fileId: string): Promise<string> {
    const res = await deps.fetch(`${conn.url}/v1/files/${encodeURIComponent(fileId)}/content`, { headers });
    if (!res.ok) throw new ApiCallError(`cannot read file ${fileId} (HTTP ${res.status})`);
    return res.text();
  }
  const printBatch = (b: BatchJson) => {
    if (json) return deps.out(JSON.stringify(b, null, 2));
    const c = b.request_counts;
    deps.out(`${b.id}  ${b.status}  ${c.completed + c.failed}/${c.total} done, ${c.failed} failed`);
    if (b.output_file_id) deps.out(`  output: ${b.output_file_id}`);
    if (b.error_file_id) deps.out(`  errors: ${b.error_file_id}`);
    for (const e of b.errors?.data ?? []) deps.out(`  line ${e.line ?? '-'}: ${e.code}: ${e.message}`);
  };

  try {
    switch (op.op) {
      case 'submit': {
        const jsonl = toBatchJsonl(await readFile(op.file, 'utf8'), op.model, op.maxTokens);
        const form = new FormData();
        form.append('purpose', 'batch');
        form.append('file', new Blob([jsonl]), path.basename(op.file));
        const up = await deps.fetch(`${conn.url}/v1/files`, { method: 'POST', headers, body: form });
        if (!up.ok) throw new ApiCallError(`upload failed: ${(await up.text()).slice(0, 300)} (HTTP ${up.status})`);
        const file = (await up.json()) as { id: string };
        let b = await call<BatchJson>('POST', '/v1/batches', { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
        deps.err(`sluice: batch ${b.id} created from ${file.id}`);
        if (!op.wait) {
          printBatch(b);
          return 0;
        }
        const started = Date.now();
        let lastPlain = 0;
        while (!FINAL.includes(b.status)) {
          await new Promise((r) => setTimeout(r, deps.pollMs ?? 1000));
          b = await call<BatchJson>('GET', `/v1/batches/${encodeURIComponent(b.id)}`);
          const line = progressLine(b, (Date.now() - started) / 1000);
          if (deps.progress) deps.progress(line);
          else if (Date.now() - lastPlain >= 5000 || FINAL.includes(b.status)) {
            deps.err(line);
            lastPlain = Date.now();
          }
        }
        if (deps.progress) deps.err('');
        printBatch(b);
        return b.status === 'completed' ? 0 : 1;
      }
      case 'status':
        printBatch(await call<BatchJson>('GET', `/v1/batches/${encodeURIComponent(op.id)}`));
        return 0;
      case 'cancel':
        printBatch(await call<BatchJson>('POST', `/v1/batches/${encodeURIComponent(op.id)}/cancel`));
        return 0;
      case 'results':
      case 'errors': {
        const b = await call<BatchJson>('GET', `/v1/batches/${encodeURIComponent(op.id)}`);
        const fileId = op.op === 'results' ? b.output_file_id : b.error_file_id;
        if (!fileId) {
          deps.err(`sluice: batch ${b.id} (${b.status}) has no ${op.op === 'results' ? 'output' : 'error'} file`);
          for (const e of b.errors?.data ?? []) deps.out(`line ${e.line ?? '-'}: ${e.code}: ${e.message}`);
          return op.op === 'results' ? 1 : 0;
        }
        const text = await content(fileId);
        if (op.output) {
          await writeFile(op.output, text);
          deps.err(`sluice: wrote ${Buffer.byteLength(text)} bytes (${text.split('\n').filter(Boolean).length} lines) to ${op.output}`);
        } else for (const l of text.split('\n')) if (l) deps.out(l);
        return 0;
      }
      case 'list': {
        const q = new URLSearchParams();
        if (op.limit !== null) q.set('limit', String(op.limit));
        if (op.after !== null) q.set('after', op.after);
        const list = await call<{ data: BatchJson[]; has_more: boolean }>('GET', `/v1/batches${q.size ? `?${q}` : ''}`);
        if (json) deps.out(JSON.stringify(list, null, 2));
        else if (list.data.length === 0) deps.out('No batches.');
        else for (const b of list.data) deps.out(`${b.id}  ${b.status.padEnd(11)}  ${b.request_counts.completed + b.request_counts.failed}/${b.request_counts.total}  ${new Date(b.created_at * 1000).toISOString()}`);
        const last = list.data.at(-1);
        if (!json && list.has_more && last) deps.out(`More batches: --after ${last.id}`);
        return 0;
      }
    }
  } catch (err) {
    deps.err(`sluice: ${err instanceof ApiCallError ? 'error: ' : ''}${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
