/**
 * The batch workflow's database steps: validate the input file (every bad line reported by
 * number and reason, the cost estimated against the remaining budget), hand out pages of lines
 * ready to run, record live counts, and write the output and error files at the end.
 * Idempotent: transitions are guarded by the current status, files are rebuilt in one transaction.
 * Line checks are in `parse-batch-line.ts`, validation in `validate-batch.ts`, the files in `finalize-batch.ts`.
 */
import { createHash } from 'node:crypto';
import type { BatchRow, BatchStatus } from '../db/tables/index.js';
import { getBatch, insertLineRequests, recordBatchCounts, transitionBatch } from '../db/repositories/batches.js';
import { readFileLines } from '../db/repositories/files.js';
import { estimatePromptTokens } from '../domain/chat-validation.js';
import type { BatchLine } from '../contracts/batch.js';
import { estimateEmbeddingTokens } from '../domain/embeddings-validation.js';
import { batchRequestId } from '../contracts/ids.js';
import { clientFailureMessage } from '../domain/client-errors.js';
import { requestFailure } from './failures.js';
import type { BatchDeps } from './batch-deps.js';
import { EMBEDDINGS_ENDPOINT, isBlank, parseBatchLine, parseEmbeddingsBatchLine } from './parse-batch-line.js';
import { validateBatch, type ValidateResult } from './validate-batch.js';
import { finalizeBatch } from './finalize-batch.js';

/** Bound on the prompt text handed to the workflow at once (history payloads stay small). */
const MAX_PAGE_BYTES = 256 * 1024;

export function createBatchActivities(deps: BatchDeps) {
  async function batchOrThrow(batchId: string): Promise<BatchRow> {
    const batch = await getBatch(deps.db, batchId, null);
    if (!batch) throw requestFailure('NotFound', `batch ${batchId} not found`);
    return batch;
  }

  return {
    /** See {@link validateBatch} (validate-batch.ts). */
    async validateBatch(input: { batchId: string }): Promise<ValidateResult> {
      return validateBatch(deps, await batchOrThrow(input.batchId));
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
            promptTokensEstimate: estimatePromptTokens(parsed.body.messages, parsed.body.params.extras?.tools), created: Math.floor(batch.created_at.getTime() / 1000), batchId: batch.id,
            ...(parsed.body.metadata !== null ? { metadata: parsed.body.metadata } : {}),
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

    /** See {@link finalizeBatch} (finalize-batch.ts). */
    async finalizeBatch(input: { batchId: string; outcome: Extract<BatchStatus, 'completed' | 'cancelled' | 'expired'> }): Promise<{ completed: number; failed: number }> {
      return finalizeBatch(deps, await batchOrThrow(input.batchId), input);
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
