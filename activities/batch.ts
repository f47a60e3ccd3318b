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
import { activeDeployments, getModel, maxPriceForModel } from '../db/repositories/models.js';
import { refusedByModel } from '../domain/chat-fields.js';
import { checkTokenLimits, estimatePromptTokens, validateChatBody, type ValidChatBody } from '../domain/chat-validation.js';
import type { BatchLine } from '../contracts/batch.js';
import { estimateEmbeddingTokens, validateEmbeddingsBody, wrongModelKind, type ValidEmbeddingsBody } from '../domain/embeddings-validation.js';
import { encodeEmbeddings } from '../domain/embedding-vectors.js';
import type { EmbeddingsResult } from '../contracts/embeddings.js';
import { batchRequestId } from '../contracts/ids.js';
import { clientError, clientFailureMessage } from '../domain/client-errors.js';
import { costMicros, type TokenPrice } from '../domain/cost.js';
import { isObject } from '../domain/is-object.js';
import { InvalidRequestError } from '../domain/invalid-request.js';
import { periodOf } from '../domain/billing-calendar.js';
import { requestFailure } from './failures.js';

/** Lines read per page. */
const PAGE = 1000;
/** Most errors kept in `errors.data` (the count of the rest is in the last message). */
const MAX_ERRORS = 1000;
/** Bound on the prompt text handed to the workflow at once (history payloads stay small). */
const MAX_PAGE_BYTES = 256 * 1024;

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

/** A line's envelope (JSON object, custom_id, method, url), checked as OpenAI does: its body, or the error. */
function lineEnvelope(content: string, endpoint: string): { ok: true; customId: string; body: unknown } | Extract<ParsedLine, { ok: false }> {
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
  return { ok: true, customId, body: json.body };
}

/** A body's refusal as a line error (`param` under `body.`). */
function bodyError(err: unknown, customId: string): Extract<ParsedLine, { ok: false }> {
  const e = err as { message?: string; code?: string | null; param?: string | null };
  return { ok: false, customId, error: { code: e.code ?? 'invalid_body', message: e.message ?? 'invalid body', param: e.param ? `body.${e.param}` : 'body' } };
}

/** Checks one input line's envelope and body, as OpenAI does; pure. */
export function parseBatchLine(content: string, endpoint: string): ParsedLine {
  const envelope = lineEnvelope(content, endpoint);
  if (!envelope.ok) return envelope;
  try {
    const body = validateChatBody(envelope.body);
    // As OpenAI's Batch API: a batch line is answered in the output file, never streamed.
    if (body.stream) return { ok: false, customId: envelope.customId, error: { code: 'unsupported_parameter', message: "'stream' is not supported in batch lines.", param: 'body.stream' } };
    return { ok: true, customId: envelope.customId, body, raw: envelope.body };
  } catch (err) {
    return bodyError(err, envelope.customId);
  }
}

/** The batch endpoint whose lines are embeddings requests. */
export const EMBEDDINGS_ENDPOINT = '/v1/embeddings';

export type ParsedEmbeddingsLine = { ok: true; customId: string; body: ValidEmbeddingsBody } | Extract<ParsedLine, { ok: false }>;

/** Checks one line of a `/v1/embeddings` batch: the same envelope, the body as `POST /v1/embeddings` checks it; pure. */
export function parseEmbeddingsBatchLine(content: string): ParsedEmbeddingsLine {
  const envelope = lineEnvelope(content, EMBEDDINGS_ENDPOINT);
  if (!envelope.ok) return envelope;
  try {
    return { ok: true, customId: envelope.customId, body: validateEmbeddingsBody(envelope.body) };
  } catch (err) {
    return bodyError(err, envelope.customId);
  }
}

/** A line's error for a refused field of its body (a pure rule's error): `param` under `body.`. */

function isBlank(content: string): boolean {
  return content.trim() === '';
}

/** `batch_req_<batch>_` : the line's number completes the request ID. */
function requestPrefix(batchId: string): string {
  return batchRequestId(batchId, 0).slice(0, -1);
}

/**
 * A succeeded line's response body: the stored result; an embeddings line's vectors (stored as
 * base64) in the line's own `encoding_format`.
 */
function lineBody(endpoint: string, content: string, result: unknown): unknown {
  if (endpoint !== EMBEDDINGS_ENDPOINT || result === null) return result;
  const parsed = parseEmbeddingsBatchLine(content);
  return encodeEmbeddings(result as EmbeddingsResult, parsed.ok ? parsed.body.encodingFormat : 'float');
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
      const models = new Map<string, { model: Model | null; price: TokenPrice | null }>();
      const at = deps.now();
      let estimate = 0;
      let total = 0;
      let firstModel: string | null = null;
      const providersOf = new Map<string, string[]>();
      const fail = (line: number, e: Omit<BatchLineError, 'line'>) => {
        errorCount += 1;
        if (errors.length < MAX_ERRORS) errors.push({ ...e, line });
      };
      /** A model and its highest price in force, looked up once per batch. */
      const modelOf = async (name: string) => {
        if (!models.has(name)) {
          const model = await getModel(deps.db, name);
          models.set(name, { model, price: model ? await maxPriceForModel(deps.db, name, at) : null });
        }
        return models.get(name) as { model: Model | null; price: TokenPrice | null };
      };
      /** One line of a `/v1/embeddings` batch: its body, model (an embeddings model), `dimensions`, cost. */
      const checkEmbeddingsLine = async (line: number, content: string) => {
        const parsed = parseEmbeddingsBatchLine(content);
        if (!parsed.ok) return fail(line, parsed.error);
        if (seen.has(parsed.customId)) {
          return fail(line, { code: 'duplicate_custom_id', message: `The custom_id '${parsed.customId}' appears more than once in this batch.`, param: 'custom_id' });
        }
        seen.add(parsed.customId);
        const { model, price } = await modelOf(parsed.body.model);
        if (!model) return fail(line, { code: 'model_not_found', message: `The model '${parsed.body.model}' does not exist.`, param: 'body.model' });
        if (model.kind !== 'embeddings') return fail(line, { code: 'model_not_supported', message: wrongModelKind(model.id, model.kind), param: 'body.model' });
        if (parsed.body.dimensions !== null && !model.accepts_dimensions) {
          return fail(line, { code: 'unsupported_parameter', message: `'dimensions' is not supported by model ${model.id}`, param: 'body.dimensions' });
        }
        firstModel ??= model.id;
        if (price) estimate += costMicros(price, estimateEmbeddingTokens(parsed.body.inputs), 0);
      };
      for (let after = 0; ;) {
        const page = await readFileLines(deps.db, batch.input_file_id, after, PAGE);
        if (page.length === 0) break;
        for (const { line_no: line, content } of page) {
          if (isBlank(content)) continue;
          total += 1;
          if (batch.endpoint === EMBEDDINGS_ENDPOINT) {
            await checkEmbeddingsLine(line, content);
            continue;
          }
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
          // A database error fails the activity (Temporal retries it); a model with no price in
          // force costs 0 here (`maxPriceForModel`), so the budget check never passes by accident.
          const { model, price } = await modelOf(name);
          if (!model) {
            fail(line, { code: 'model_not_found', message: `The model '${name}' does not exist.`, param: 'body.model' });
            continue;
          }
          if (model.kind !== 'chat') {
            fail(line, { code: 'model_not_supported', message: wrongModelKind(model.id, model.kind), param: 'body.model' });
            continue;
          }
          const extras = parsed.body.params.extras;
          if (extras !== undefined) {
            // As the chat route: a field one of the model's backends refuses is refused for the line.
            let providers = providersOf.get(name);
            if (providers === undefined) providersOf.set(name, (providers = (await activeDeployments(deps.db, name)).map((d) => d.provider)));
            const refused = refusedByModel(name, providers, extras);
            if (refused !== null) {
              fail(line, { code: refused.code, message: refused.message, param: refused.param ? `body.${refused.param}` : 'body' });
              continue;
            }
            continue;
          }
          // A line without max_tokens runs, and is estimated, at the model's output limit.
          let maxTokens: number;
          try {
            maxTokens = checkTokenLimits(model, parsed.body.messages, parsed.body.params.maxTokens, model.max_output_tokens);
          } catch (err) {
            if (!(err instanceof InvalidRequestError)) throw err;
            fail(line, bodyError(err, parsed.customId).error);
            continue;
          }
          firstModel ??= name;
          if (price) estimate += costMicros(price, estimatePromptTokens(parsed.body.messages), maxTokens);
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
        if (batch.endpoint === EMBEDDINGS_ENDPOINT) {
          const parsed = parseEmbeddingsBatchLine(content);
          if (!parsed.ok) throw requestFailure('BadRequest', `line ${lineNo} no longer validates: ${parsed.error.message}`);
          lines.push({
            lineNo,
            input: {
              requestId: batchRequestId(batch.id, lineNo), tenantId: batch.tenant_id, keyId: batch.key_id, kind: 'batch',
              subject: parsed.body.user ?? batch.key_id, model: parsed.body.model, inputs: parsed.body.inputs, dimensions: parsed.body.dimensions,
              promptTokensEstimate: estimateEmbeddingTokens(parsed.body.inputs), created: Math.floor(batch.created_at.getTime() / 1000),
            },
          });
          continue;
        }
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
        bodyHash: createHash('sha256').update(JSON.stringify('inputs' in l.input ? l.input.inputs : l.input.messages)).digest('hex'),
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
              outLines.push(JSON.stringify({ id, custom_id: customId, response: { status_code: 200, request_id: id, body: lineBody(batch.endpoint, row.content, row.result) }, error: null }));
            } else if (row.status === 'failed') {
              failed += 1;
              const e = (row.error ?? {}) as { type?: string; message?: string; code?: string | null };
              const answer = clientError(e.type ?? null, e.code ?? null, e.message ?? null);
              errLines.push(JSON.stringify({
                id, custom_id: customId,
                response: { status_code: answer.status, request_id: id, body: { error: { message: answer.message, type: answer.type, param: null, code: answer.code } } },
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
