/**
 * `POST /v1/completions`: the legacy text completion, sync; `prompt` a string or an array of
 * strings (one choice each, run in the request's one workflow). Validated by
 * `domain/completion-validation.ts`, run as its own `completionRequest` workflow through the same
 * pipeline as a chat request (authorized, reserved, billed and audited alike), answered as a
 * `text_completion`. llama.cpp continues the prompt raw (no chat template); an openai-compatible
 * deployment passes it through to its upstream's `/completions`.
 * Synchronous only, as embeddings: `Prefer: respond-async` is not applied (no `Preference-Applied` header).
 */
import { createHash } from 'node:crypto';
import { Router } from 'express';
import type { Client } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import { activeDeployments, getModel } from '../../db/repositories/models.js';
import { insertRequest } from '../../db/repositories/requests.js';
import { canonicalJson } from '../../domain/canonical-json.js';
import { newId } from '../../domain/ids.js';
import { allowsModel } from '../../domain/policy.js';
import { refusedByModel } from '../../domain/chat-fields.js';
import { estimatePromptTokens, minPromptTokens } from '../../domain/chat-validation.js';
import { toTextCompletion, validateCompletionBody } from '../../domain/completion-validation.js';
import type { ChatCompletion } from '../../contracts/chat.js';
import type { CompletionRequestInput } from '../../contracts/completions.js';
import { completionWorkflowId } from '../../contracts/ids.js';
import type { completionRequest } from '../../workflows/completion-request.js';
import type { Metrics } from '../../runtime/metrics.js';
import type { Logger } from '../../runtime/logger.js';
import { authOf, requirePermission } from '../auth.js';
import { HttpError, badRequest, fromWorkflowFailure } from '../errors.js';
import { startRequestWorkflow } from '../workflow-start.js';
import { cacheDirectiveFor, setCacheHeader } from './chat.js';
import { requestCacheStatus } from '../../db/repositories/cache.js';

export interface CompletionRouteDeps {
  db: Db;
  temporal: Client;
  metrics: Metrics;
  eagerStart: boolean;
  log: Logger;
}

function requestIdFor(tenantId: string, idempotencyKey: string | null): string {
  if (idempotencyKey === null) return newId('cmpl');
  return `cmpl_${createHash('sha256').update(`completions\n${tenantId}\n${idempotencyKey}`).digest('hex').slice(0, 32)}`;
}

export function completionRoutes(deps: CompletionRouteDeps): Router {
  const router = Router();

  router.post('/completions', requirePermission(deps, 'chat'), async (req, res) => {
    const auth = authOf(req);
    const body = validateCompletionBody(req.body);
    if (auth.tenantId === null) throw new HttpError('permission_error', 'Inference needs a tenant key; the admin key has no tenant', 'permission_denied');
    if (!allowsModel(auth.scopes, body.model)) throw new HttpError('permission_error', `This key may not use model ${body.model}`, 'model_not_allowed', 'model');
    const model = await getModel(deps.db, body.model);
    if (!model) throw new HttpError('not_found_error', `The model '${body.model}' does not exist`, 'model_not_found', 'model');
    const deployments = await activeDeployments(deps.db, body.model);
    const refused = refusedByModel(body.model, deployments.map((d) => d.provider), body.params.extras);
    if (refused !== null) throw refused;
    if (body.params.maxTokens > model.max_output_tokens) {
      throw badRequest(`max_tokens is too large: ${body.params.maxTokens}. This model supports at most ${model.max_output_tokens} completion tokens.`, 'max_tokens', 'invalid_value');
    }
    const prompts = body.prompts.map((content) => [{ role: 'user' as const, content }]);
    if (prompts.some((messages) => minPromptTokens(messages) + body.params.maxTokens > model.context_length)) {
      throw badRequest(`This model's maximum context length is ${model.context_length} tokens; your prompt is longer.`, 'prompt', 'context_length_exceeded');
    }
    const echo = body.echo ? body.prompts : null;
    const key = req.get('idempotency-key') ?? null;
    if (key !== null && !/^[\x21-\x7e]{1,255}$/.test(key)) throw badRequest('Idempotency-Key must be 1-255 visible ASCII characters', 'Idempotency-Key', 'invalid_value');
    const cache = cacheDirectiveFor(req);
    const requestId = requestIdFor(auth.tenantId, key);
    const bodyHash = createHash('sha256').update(canonicalJson(req.body)).digest('hex');
    const { created, row } = await insertRequest(deps.db, { id: requestId, tenantId: auth.tenantId, keyId: auth.keyId, kind: 'sync', model: body.model, idempotencyKey: key, bodyHash });
    if (!created && (row.body_hash !== bodyHash || row.tenant_id !== auth.tenantId)) {
      throw new HttpError('idempotency_error', 'This Idempotency-Key was already used with a different request body', 'idempotency_key_reused');
    }
    if (row.status === 'succeeded') {
      if (row.result === null) throw new HttpError('conflict_error', 'The result of this request was erased (retention or erase)', 'content_purged');
      setCacheHeader(res, row.cache);
      res.json(toTextCompletion(row.result as ChatCompletion, echo));
      return;
    }
    const workflowId = completionWorkflowId(requestId);
    // A retry that finds its row still queued starts the workflow too: the process that wrote the
    // row may have died before starting it (the same workflow ID is the same work, so a workflow
    // that did start is used as it is).
    if (created || row.status === 'queued') {
      // `prompts` and `echo` only when asked for: a one-prompt request's input is as it was.
      const input: CompletionRequestInput = {
        requestId, tenantId: auth.tenantId, keyId: auth.keyId, kind: 'sync', subject: body.user ?? auth.keyId, model: body.model,
        messages: body.messages, params: body.params,
        promptTokensEstimate: prompts.reduce((n, messages) => n + estimatePromptTokens(messages), 0),
        created: Math.floor(row.created_at.getTime() / 1000), batchId: null,
        ...(cache !== null ? { cache } : {}),
        ...(body.prompts.length > 1 ? { prompts: body.prompts } : {}),
        ...(body.echo ? { echo: true as const } : {}),
      };
      await startRequestWorkflow<typeof completionRequest>(deps, {
        type: 'completionRequest', workflowId, requestId, args: [input],
        kind: 'sync', tenantId: auth.tenantId, model: body.model, priorityKey: 1, ownsRow: created, status: 'running',
      });
    }
    try {
      const completion = (await deps.temporal.workflow.getHandle<typeof completionRequest>(workflowId).result()) as ChatCompletion;
      deps.metrics.chatRequests.inc({ model: row.model, status: '200', tenant: row.tenant_id });
      setCacheHeader(res, await requestCacheStatus(deps.db, row.id, row.tenant_id));
      res.json(toTextCompletion(completion, echo));
    } catch (err) {
      const mapped = fromWorkflowFailure(err);
      deps.metrics.chatRequests.inc({ model: row.model, status: String(mapped?.status ?? 500), tenant: row.tenant_id });
      throw mapped ?? err;
    }
  });

  return router;
}
