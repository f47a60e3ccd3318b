/** The batch workflow's last step: the output and error files, then the final status ({@link finalizeBatch}). */
import { Context } from '@temporalio/activity';
import type { BatchRow, BatchStatus } from '../db/tables/index.js';
import { lineOutcomes, transitionBatch } from '../db/repositories/batches.js';
import { deleteFile, finishFile, insertFile, insertFileLines } from '../db/repositories/files.js';
import { encodeEmbeddings } from '../domain/embedding-vectors.js';
import type { EmbeddingsResult } from '../contracts/embeddings.js';
import { batchRequestId } from '../contracts/ids.js';
import { clientError } from '../domain/client-errors.js';
import { PAGE, type BatchDeps } from './batch-deps.js';
import { EMBEDDINGS_ENDPOINT, RESPONSES_ENDPOINT, customIdOf, isBlank, parseEmbeddingsBatchLine } from './parse-batch-line.js';
import { batchLineResponse } from '../domain/responses-batch.js';
import type { ChatCompletion } from '../contracts/chat.js';

/** `batch_req_<batch>_` : the line's number completes the request ID. */
function requestPrefix(batchId: string): string {
  return batchRequestId(batchId, 0).slice(0, -1);
}

/**
 * A succeeded line's response body: the stored result; an embeddings line's vectors (stored as
 * base64) in the line's own `encoding_format`; a `/v1/responses` line's response object.
 */
function lineBody(endpoint: string, content: string, result: unknown, requestId: string): unknown {
  if (result === null) return result;
  if (endpoint === RESPONSES_ENDPOINT) return batchLineResponse(content, result as ChatCompletion, requestId);
  if (endpoint !== EMBEDDINGS_ENDPOINT) return result;
  const parsed = parseEmbeddingsBatchLine(content);
  return encodeEmbeddings(result as EmbeddingsResult, parsed.ok ? parsed.body.encodingFormat : 'float');
}

export function outputFileId(batchId: string, which: 'output' | 'error'): string {
  return `${batchId.replace(/^batch_/, 'file_')}_${which}`;
}

/**
 * Writes the output file (one line per succeeded request) and the error file (failed requests,
 * and lines never run: `batch_cancelled` / `batch_expired`), in OpenAI's output format, with
 * counts recomputed from the requests themselves; then the final status. One transaction, so a
 * retry rebuilds the same files.
 */
export async function finalizeBatch(deps: BatchDeps, batch: BatchRow, input: { outcome: Extract<BatchStatus, 'completed' | 'cancelled' | 'expired'> }): Promise<{ completed: number; failed: number }> {
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
          outLines.push(JSON.stringify({ id, custom_id: customId, response: { status_code: 200, request_id: id, body: lineBody(batch.endpoint, row.content, row.result, id) }, error: null }));
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
}
