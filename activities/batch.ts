/**
 * The batch workflow's database steps: validate the input file (every bad line reported by
 * number and reason, the cost estimated against the remaining budget), hand out pages of lines
 * ready to run, record live counts, and write the output and error files at the end.
 * Idempotent: transitions are guarded by the current status, files are rebuilt in one transaction.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { Db } from '../db/database.js';
import type { Logger } from '../runtime/logger.js';
import type { BatchLineError, BatchRow, BatchStatus, Model } from '../db/tables/index.js';
import { getBatch, insertLineRequests, lineOutcomes, recordBatchCounts, remainingBudget, transitionBatch } from '../db/repositories/batches.js';
import { deleteFile, finishFile, insertFile, insertFileLines, readFileLines } from '../db/repositories/files.js';
import { getModel, maxPriceForModel } from '../db/repositories/models.js';
import { estimatePromptTokens, minPromptTokens, validateChatBody, type ValidChatBody } from '../domain/chat-validation.js';
import type { BatchLine } from '../contracts/batch.js';
import { FailureTypes } from '../contracts/failures.js';
import { batchRequestId } from '../contracts/ids.js';
import { clientFailureMessage } from '../domain/client-errors.js';
import { costMicros } from '../domain/cost.js';
import { periodOf } from '../domain/billing-calendar.js';
import { requestFailure } from './failures.js';

/** Lines read per page. */
const PAGE = 1000;
/** Most errors kept in `errors.data` (the count of the rest is in the last message). */
const MAX_ERRORS = 1000;
/** Bound on the prompt text handed to the workflow at once (history payloads stay small). */
const MAX_PAGE_BYTES = 256 * 1024;

const ERROR_TYPE_FOR_STATUS: Record<number, string> = {
  400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error',
  409: 'conflict_error', 429: 'rate_limit_error', 503: 'service_unavailable',
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export type ParsedLine =
  | { ok: true; customId: string; body: ValidChatBody; raw: unknown }
  | { ok: false; error: Omit<BatchLineError, 'line'>; customId: string | null };

/** A parsed line's `custom_id` if it is a non-empty string, else null. */
function customIdField(json: Record<string, unknown>): string | null {
  return typeof json.custom_id === 'string' && json.custom_id !== '' ? json.custom_id : null;
}

/** The `custom_id` of an input line (null when the line has none): all the output files need of a validated line. */
export function customIdOf(content: string): string | null {
  try {
    const json: unknown = JSON.parse(content);
    return isObject(json) ? customIdField(json) : null;
  } catch {
    return null;
  }
}

/** Checks one input line's envelope and body, as OpenAI does; pure. */
export function parseBatchLine(content: string, endpoint: string): ParsedLine {
  let json: unknown;
  try {
    json = JSON.parse(content);
  } catch {
    return { ok: false, customId: null, error: { code: 'invalid_json_line', message: 'This line is not parseable as valid JSON.', param: null } };
  }
  if (!isObject(json)) return { ok: false, customId: null, error: { code: 'invalid_request', message: 'Each line must be a JSON object.', param: null } };
  const customId = customIdField(json);
  if (customId === null) return { ok: false, customId, error: { code: 'missing_required_parameter', message: "'custom_id' is required and must be a non-empty string.", param: 'custom_id' } };
  if (customId.length > 512) return { ok: false, customId, error: { code: 'invalid_value', message: "'custom_id' is longer than 512 characters.", param: 'custom_id' } };
  if (json.method !== 'POST') return { ok: false, customId, error: { code: 'invalid_method', message: "'method' must be 'POST'.", param: 'method' } };
  if (json.url !== endpoint) return { ok: false, customId, error: { code: 'invalid_url', message: `'url' must be '${endpoint}', the batch's endpoint.`, param: 'url' } };
  try {
    const body = validateChatBody(json.body);
    // As OpenAI's Batch API: a batch line is answered in the output file, never streamed.
    if (body.stream) return { ok: false, customId, error: { code: 'unsupported_parameter', message: "'stream' is not supported in batch lines.", param: 'body.stream' } };
    return { ok: true, customId, body, raw: json.body };
  } catch (err) {
    const e = err as { message?: string; code?: string | null; param?: string | null };
    return { ok: false, customId, error: { code: e.code ?? 'invalid_body', message: e.message ?? 'invalid body', param: e.param ? `body.${e.param}` : 'body' } };
  }
}

function isBlank(content: string): boolean {
  return content.trim() === '';
}

/** `batch_req_<batch>_` : the line's number completes the request ID. */
function requestPrefix(batchId: string): string {
  return batchRequestId(batchId, 0).slice(0, -1);
}

export function outputFileId(batchId: string, which: 'output' | 'error'): string {
  return `${batchId.replace(/^batch_/, 'file_')}_${which}`;
}

export interface ValidateResult {
  ok: boolean;
  total: number;
}

export function createBatchActivities(deps: { db: Db; now: () => Date; log?: Logger | null }) {
  async function batchOrThrow(batchId: string): Promise<BatchRow> {
    const batch = await getBatch(deps.db, batchId, null);
    if (!batch) throw requestFailure('NotFound', `batch ${batchId} not found`);
    return batch;
  }

  return {
    /**
     * Validates every line (JSON, custom_id unique, method, url, body, model, context) and the
     * batch's worst-case cost against the tenant's remaining monthly budget. Any bad line fails the
     * whole batch with `errors.data` listing line numbers and reasons, as OpenAI does.
     */
    async validateBatch(input: { batchId: string }): Promise<ValidateResult> {
      const batch = await batchOrThrow(input.batchId);
      if (batch.status !== 'validating') return { ok: batch.status !== 'failed', total: batch.total };
      const errors: BatchLineError[] = [];
      let errorCount = 0;
      const seen = new Set<string>();
      const models = new Map<string, { model: Model | null; price: { input: number; output: number } | null }>();
      const at = deps.now();
      let estimate = 0;
      let total = 0;
      let firstModel: string | null = null;
      const fail = (line: number, e: Omit<BatchLineError, 'line'>) => {
        errorCount += 1;
        if (errors.length < MAX_ERRORS) errors.push({ ...e, line });
      };
      for (let after = 0; ;) {
        const page = await readFileLines(deps.db, batch.input_file_id, after, PAGE);
        if (page.length === 0) break;
        for (const { line_no: line, content } of page) {
          if (isBlank(content)) continue;
          total += 1;
          const parsed = parseBatchLine(content, batch.endpoint);
          if (!parsed.ok) {
            fail(line, parsed.error);
            continue;
          }
          if (seen.has(parsed.customId)) {
            fail(line, { code: 'duplicate_custom_id', message: `The custom_id '${parsed.customId}' appears more than once in this batch.`, param: 'custom_id' });
            continue;
          }
          seen.add(parsed.customId);
          const name = parsed.body.model;
          if (!models.has(name)) {
            const model = await getModel(deps.db, name);
            // A database error fails the activity (Temporal retries it); a model with no price in
            // force costs 0 here (`maxPriceForModel`), so the budget check never passes by accident.
            models.set(name, { model, price: model ? await maxPriceForModel(deps.db, name, at) : null });
          }
          const { model, price } = models.get(name) as { model: Model | null; price: { input: number; output: number } | null };
          if (!model) {
            fail(line, { code: 'model_not_found', message: `The model '${name}' does not exist.`, param: 'body.model' });
            continue;
          }
          const maxTokens = parsed.body.params.maxTokens ?? model.max_output_tokens;
          if (maxTokens > model.max_output_tokens) {
            fail(line, { code: 'invalid_value', message: `max_tokens is too large: ${maxTokens}. This model supports at most ${model.max_output_tokens} completion tokens.`, param: 'body.max_tokens' });
            continue;
          }
          if (minPromptTokens(parsed.body.messages) + maxTokens > model.context_length) {
            fail(line, { code: 'context_length_exceeded', message: `This model's maximum context length is ${model.context_length} tokens; the messages are longer.`, param: 'body.messages' });
            continue;
          }
          firstModel ??= name;
          if (price) estimate += costMicros({ inputMicrosPerMtok: price.input, outputMicrosPerMtok: price.output }, estimatePromptTokens(parsed.body.messages), maxTokens);
        }
        after = page[page.length - 1]?.line_no ?? after;
        Context.current().heartbeat(after);
      }
      if (total === 0) fail(0, { code: 'empty_file', message: 'The input file has no requests.', param: 'input_file_id' });
      if (errorCount > errors.length) {
        errors.push({ code: 'too_many_errors', message: `${errorCount - errors.length} more lines have errors; only the first ${MAX_ERRORS} are listed.`, param: null, line: null });
      }
      if (errors.length === 0) {
        const remaining = await remainingBudget(deps.db, batch.tenant_id, periodOf(at));
        if (remaining !== null && estimate > remaining) {
          errors.push({
            code: 'insufficient_quota',
            message: `The batch may cost up to ${estimate} micro-USD (every line at its max_tokens), more than the ${Math.max(0, remaining)} micro-USD left in this month's budget.`,
            param: null, line: null,
          });
        }
      }
      if (errors.length > 0) {
        await transitionBatch(deps.db, batch.id, ['validating'], 'failed', at, { total, errors, estimatedCostMicros: estimate });
        return { ok: false, total };
      }
      await transitionBatch(deps.db, batch.id, ['validating'], 'in_progress', at, { total, model: firstModel, estimatedCostMicros: estimate });
      return { ok: true, total };
    },

    /**
     * The next lines after `afterLine` as request inputs (about 256 KB of prompt at most), their
     * `requests` rows created, and the last line number looked at (null: the file has no more).
     * Lines were validated; a blank line is skipped.
     */
    async loadBatchLines(input: { batchId: string; afterLine: number; limit: number }): Promise<{ lines: BatchLine[]; scannedThrough: number | null }> {
      const batch = await batchOrThrow(input.batchId);
      const page = await readFileLines(deps.db, batch.input_file_id, input.afterLine, input.limit);
      const lines: BatchLine[] = [];
      let bytes = 0;
      let scannedThrough: number | null = null;
      for (const { line_no: lineNo, content } of page) {
        if (lines.length > 0 && bytes + content.length > MAX_PAGE_BYTES) break;
        bytes += content.length;
        scannedThrough = lineNo;
        if (isBlank(content)) continue;
        const parsed = parseBatchLine(content, batch.endpoint);
        if (!parsed.ok) throw requestFailure('BadRequest', `line ${lineNo} no longer validates: ${parsed.error.message}`);
        lines.push({
          lineNo,
          input: {
            requestId: batchRequestId(batch.id, lineNo), tenantId: batch.tenant_id, keyId: batch.key_id, kind: 'batch',
            subject: parsed.body.user ?? batch.key_id, model: parsed.body.model, messages: parsed.body.messages, params: parsed.body.params,
            promptTokensEstimate: estimatePromptTokens(parsed.body.messages), created: Math.floor(batch.created_at.getTime() / 1000), batchId: batch.id,
          },
        });
      }
      await insertLineRequests(deps.db, lines.map((l) => ({
        id: l.input.requestId, tenantId: batch.tenant_id, keyId: batch.key_id, model: l.input.model,
        bodyHash: createHash('sha256').update(JSON.stringify(l.input.messages)).digest('hex'),
      })));
      return { lines, scannedThrough };
    },

    /** Live `request_counts`; absolute values, so a replay is harmless. */
    async recordBatchProgress(input: { batchId: string; completed: number; failed: number }): Promise<void> {
      await recordBatchCounts(deps.db, input.batchId, input);
    },

    /**
     * Writes the output file (one line per succeeded request) and the error file (failed requests,
     * and lines never run: `batch_cancelled` / `batch_expired`), in OpenAI's output format, with
     * counts recomputed from the requests themselves; then the final status. One transaction, so a
     * retry rebuilds the same files.
     */
    async finalizeBatch(input: { batchId: string; outcome: Extract<BatchStatus, 'completed' | 'cancelled' | 'expired'> }): Promise<{ completed: number; failed: number }> {
      const batch = await batchOrThrow(input.batchId);
      if (batch.status === input.outcome) return { completed: batch.completed, failed: batch.failed };
      await transitionBatch(deps.db, batch.id, ['in_progress', 'cancelling'], 'finalizing', deps.now());
      const prefix = requestPrefix(batch.id);
      const outId = outputFileId(batch.id, 'output');
      const errId = outputFileId(batch.id, 'error');
      const notRun = input.outcome === 'expired'
        ? { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' }
        : { code: 'batch_cancelled', message: 'This request was not executed because the batch was cancelled.' };
      return deps.db.transaction().execute(async (trx) => {
        await deleteFile(trx, outId);
        await deleteFile(trx, errId);
        await insertFile(trx, { id: outId, tenantId: batch.tenant_id, purpose: 'batch_output', filename: `${batch.id}_output.jsonl` });
        await insertFile(trx, { id: errId, tenantId: batch.tenant_id, purpose: 'batch_output', filename: `${batch.id}_error.jsonl` });
        const out = { lines: 0, bytes: 0 };
        const err = { lines: 0, bytes: 0 };
        let completed = 0;
        let failed = 0;
        for (let after = 0; ;) {
          const page = await lineOutcomes(trx, batch.input_file_id, prefix, after, PAGE);
          if (page.length === 0) break;
          after = page[page.length - 1]?.line_no ?? after;
          const outLines: string[] = [];
          const errLines: string[] = [];
          for (const row of page) {
            if (isBlank(row.content)) continue;
            // The lines were validated; the output needs only each line's custom_id.
            const customId = customIdOf(row.content);
            const id = row.request_id ?? batchRequestId(batch.id, row.line_no);
            if (row.status === 'succeeded') {
              completed += 1;
              outLines.push(JSON.stringify({ id, custom_id: customId, response: { status_code: 200, request_id: id, body: row.result }, error: null }));
            } else if (row.status === 'failed') {
              failed += 1;
              const e = (row.error ?? {}) as { type?: string; message?: string; code?: string | null };
              const status = (FailureTypes as Record<string, number>)[e.type ?? 'InternalError'] ?? 500;
              errLines.push(JSON.stringify({
                id, custom_id: customId,
                response: { status_code: status, request_id: id, body: { error: { message: clientFailureMessage(e.type ?? null, e.code ?? null, e.message ?? null), type: ERROR_TYPE_FOR_STATUS[status] ?? 'server_error', param: null, code: e.code ?? null } } },
                error: null,
              }));
            } else {
              errLines.push(JSON.stringify({ id, custom_id: customId, response: null, error: notRun }));
            }
          }
          await insertFileLines(trx, outId, out.lines + 1, outLines);
          await insertFileLines(trx, errId, err.lines + 1, errLines);
          out.lines += outLines.length;
          err.lines += errLines.length;
          out.bytes += outLines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
          err.bytes += errLines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
          Context.current().heartbeat(after);
        }
        await finishFile(trx, outId, { bytes: out.bytes, lineCount: out.lines, trailingNewline: out.lines > 0 });
        await finishFile(trx, errId, { bytes: err.bytes, lineCount: err.lines, trailingNewline: err.lines > 0 });
        if (out.lines === 0) await deleteFile(trx, outId);
        if (err.lines === 0) await deleteFile(trx, errId);
        await transitionBatch(trx, batch.id, ['finalizing'], input.outcome, deps.now(), {
          completed, failed, outputFileId: out.lines > 0 ? outId : null, errorFileId: err.lines > 0 ? errId : null,
        });
        return { completed, failed };
      });
    },

    /** The batch failed as a whole (not a line): recorded with the reason. */
    async failBatch(input: { batchId: string; message: string }): Promise<void> {
      // The tenant reads `errors`: the raw reason (any exception's text) goes to the log only.
      deps.log?.warn('batch failed', { batch: input.batchId, detail: input.message.slice(0, 1000) });
      await transitionBatch(deps.db, input.batchId, ['validating', 'in_progress', 'cancelling', 'finalizing'], 'failed', deps.now(), {
        errors: [{ code: 'batch_failed', message: clientFailureMessage('InternalError', null, null), param: null, line: null }],
      });
    },
  };
}

export type BatchActivities = ReturnType<typeof createBatchActivities>;
