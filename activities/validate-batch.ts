/** The batch workflow's validation step: {@link validateBatch}. */
import { Context } from '@temporalio/activity';
import type { BatchLineError, BatchRow, Model } from '../db/tables/index.js';
import { remainingBudget, transitionBatch } from '../db/repositories/batches.js';
import { readFileLines } from '../db/repositories/files.js';
import { activeDeployments, getModel, maxPriceForModel } from '../db/repositories/models.js';
import { refusedByModel } from '../domain/chat-fields.js';
import { checkTokenLimits, estimatePromptTokens } from '../domain/chat-validation.js';
import { estimateEmbeddingTokens, wrongModelKind } from '../domain/embeddings-validation.js';
import { costMicros, type TokenPrice } from '../domain/cost.js';
import { InvalidRequestError } from '../domain/invalid-request.js';
import { periodOf } from '../domain/billing-calendar.js';
import { PAGE, type BatchDeps } from './batch-deps.js';
import { responsesParam } from '../domain/responses-validation.js';
import { EMBEDDINGS_ENDPOINT, RESPONSES_ENDPOINT, bodyError, isBlank, parseBatchLine, parseEmbeddingsBatchLine } from './parse-batch-line.js';

/** Most errors kept in `errors.data` (the count of the rest is in the last message). */
const MAX_ERRORS = 1000;

export interface ValidateResult {
  ok: boolean;
  total: number;
}

/**
 * Validates every line (JSON, custom_id unique, method, url, body, model, context) and the
 * batch's worst-case cost against the tenant's remaining monthly budget. Any bad line fails the
 * whole batch with `errors.data` listing line numbers and reasons, as OpenAI does.
 */
export async function validateBatch(deps: BatchDeps, batch: BatchRow): Promise<ValidateResult> {
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
  /** A refusal of the chat path under the endpoint's field names (`/v1/responses`: `max_output_tokens`, `text.format`…). */
  const named = (err: InvalidRequestError) => (batch.endpoint === RESPONSES_ENDPOINT ? responsesParam(err) : err);
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
          const e = named(refused);
          fail(line, { code: e.code, message: e.message, param: e.param ? `body.${e.param}` : 'body' });
          continue;
        }
      }
      // A line without max_tokens runs, and is estimated, at the model's output limit.
      let maxTokens: number;
      try {
        maxTokens = checkTokenLimits(model, parsed.body.messages, parsed.body.params.maxTokens, model.max_output_tokens);
      } catch (err) {
        if (!(err instanceof InvalidRequestError)) throw err;
        fail(line, bodyError(named(err), parsed.customId).error);
        continue;
      }
      firstModel ??= name;
      if (price) estimate += costMicros(price, estimatePromptTokens(parsed.body.messages, parsed.body.params.extras?.tools), maxTokens);
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
}
