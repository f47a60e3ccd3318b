/**
 * The llama.cpp inference backend (through node-llama-cpp 3.x): its lifecycle and one request's
 * path through it.
 *
 * One model, one context holding `slots` sequences: requests that run at the same time share the
 * context and node-llama-cpp batches their decoding (with `fullSteps`, every generating sequence in
 * every step: `llama-cpp/full-batches.ts`). A request takes a free sequence (or waits for
 * one in the {@link SlotQueue}), evaluates its prompt, samples token by token with the low-level
 * sequence API, and always erases the sequence's KV state before handing it on. Tools: described
 * through the chat wrapper, a forced call under a JSON-schema grammar, an `auto` call under the
 * call grammar from where the wrapper's call prefix appears (`llama-cpp/tool-calls.ts`,
 * `llama-cpp/call-grammar.ts`).
 *
 * The parts, one per file in `llama-cpp/`: chat formatting (`prompt-preparer.ts`), the fair queue of
 * sequences (`slot-queue.ts`), the sampling and stop loop (`generate-on-sequence.ts`) and the guard
 * against faults in node-llama-cpp's decode loop (`fault-guard.ts`). Every request is checked by
 * the shared validator (domain/sampling-params.ts) before node-llama-cpp sees it (see
 * fault-guard.ts for why).
 */
import {
  getLlama,
  TokenBias,
  type Llama,
  type LlamaGrammar,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';

import { checkGenerateInput } from '../../domain/sampling-params.js';
import { refusedOn } from '../../domain/chat-fields.js';
import { canonicalJson } from '../../domain/canonical-json.js';
import { llamaCppGrammarFor } from '../../domain/response-format.js';
import { forcedCallGrammar, readForcedCall } from '../../domain/tools.js';
import type { ResponseFormat } from '../../contracts/chat.js';
import {
  BackendError,
  InterruptedGeneration,
  type GenerateParams,
  type GenerateRequest,
  type GenerateResult,
  type InferenceBackend,
} from './types.js';
import { faultGuard } from './llama-cpp/fault-guard.js';
import { createFullBatchStrategy } from './llama-cpp/full-batches.js';
import { decodeContent, generateOnSequence, switchedCallText } from './llama-cpp/generate-on-sequence.js';
import { createPromptPreparer, tokenizeRawPrompt } from './llama-cpp/prompt-preparer.js';
import { SlotQueue } from './llama-cpp/slot-queue.js';
import { autoCallGrammar, createArgumentsValidator, readTemplateCall, toChatModelFunctions } from './llama-cpp/tool-calls.js';
import { callSyntaxOf } from './llama-cpp/call-grammar.js';
import { createEmbedder } from './llama-cpp/embedder.js';
import { createDeltaTracker } from './stream-deltas.js';

/** How the llama.cpp backend loads its model and sizes its context. */
export interface LlamaCppBackendOptions {
  /** Path of the GGUF file. */
  modelPath: string;
  /** Parallel sequences in the one context: how many requests decode at once (batched). */
  slots: number;
  /**
   * CPU threads for evaluation. Always set it: node-llama-cpp's default made parallel sequences
   * hundreds of times slower on a small machine.
   */
  threads: number;
  /**
   * Context size of each sequence, in tokens (llama.cpp may round it up; the backend's
   * `contextSize` reports the real value).
   * @default the model's training context, capped at 4096
   */
  contextSize?: number;
  /**
   * GPU use when the backend creates its own `Llama` instance; ignored when `llama` is given.
   * @default false
   */
  gpu?: false | 'auto';
  /**
   * Decode steps wait (boundedly) for every generating sequence (llama-cpp/full-batches.ts); false
   * = node-llama-cpp's default batching, whose steps miss the sequence that sampled last but
   * overlap its sampling with the others' decode (ahead at 4 slots on 2 cores, BENCHMARKS.md).
   * @default false
   */
  fullSteps?: boolean;
  /**
   * A shared `Llama` instance. When given, `close()` leaves it alive; otherwise the backend creates
   * one (prebuilt binaries only, never a source build) and disposes it on `close()`.
   * @default undefined
   */
  llama?: Llama;
  /**
   * Call `onProgress` after every this many generated tokens (and once at the end).
   * @default 16
   */
  progressEveryTokens?: number;
  /** Called with the number of sequences in each decode step (see llama-cpp/full-batches.ts). @default undefined */
  onBatch?: ((sequences: number) => void) | undefined;
}

/** The llama.cpp backend: the common contract plus what callers need to size requests. */
export interface LlamaCppBackend extends InferenceBackend {
  /**
   * Tokens `text` occupies as a raw prompt: the BOS token when the model prepends one, then the
   * text tokenized without special tokens. Equals `promptTokens` for the plain chat template.
   */
  countTokens(text: string): number;
  /** Tokens one sequence holds; prompt tokens + `maxTokens` must fit in it. */
  readonly contextSize: number;
}

/** Grammars kept built (by schema), most recently used last: building one costs more than a short generation. */
const GRAMMAR_CACHE_SIZE = 32;

/** What a grammar enforces: any JSON value, a schema of the grammar subset (domain/response-format.ts), or a GBNF text (an `auto` call). */
type GrammarTarget = { kind: 'json' } | { kind: 'schema'; schema: Record<string, unknown> } | { kind: 'gbnf'; text: string };

/** `build()`, with a refusal of the request (a schema the grammar cannot enforce) as `bad_request`. */
function asBadRequest<T>(build: () => T): T {
  try {
    return build();
  } catch (err) {
    throw new BackendError('bad_request', err instanceof Error ? err.message : String(err));
  }
}

/** The grammar target of a `response_format` (absent: none); a schema the grammar cannot enforce is `bad_request`. */
function formatTarget(format: ResponseFormat | undefined): GrammarTarget | null {
  return format === undefined ? null : asBadRequest(() => llamaCppGrammarFor(format));
}

/**
 * Grammars built by node-llama-cpp (`json` for `json_object`, the JSON-schema grammar for a
 * `json_schema` or a forced tool call), cached by canonical schema. A schema node-llama-cpp
 * refuses is the request's fault (`bad_request`).
 */
function createGrammarCache(llama: Llama) {
  const cache = new Map<string, Promise<LlamaGrammar>>();
  async function grammarFor(target: GrammarTarget): Promise<LlamaGrammar>;
  async function grammarFor(target: GrammarTarget | null): Promise<LlamaGrammar | null>;
  async function grammarFor(target: GrammarTarget | null): Promise<LlamaGrammar | null> {
    if (target === null) return null;
    const key = target.kind === 'json' ? 'json' : target.kind === 'gbnf' ? `gbnf:${target.text}` : canonicalJson(target.schema);
    let grammar = cache.get(key);
    if (grammar === undefined) {
      grammar = target.kind === 'json'
        ? llama.getGrammarFor('json')
        : target.kind === 'gbnf'
          ? llama.createGrammar({ grammar: target.text })
          : llama.createGrammarForJsonSchema(target.schema as Parameters<Llama['createGrammarForJsonSchema']>[0]);
      cache.set(key, grammar);
      if (cache.size > GRAMMAR_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    } else {
      cache.delete(key);
      cache.set(key, grammar);
    }
    try {
      return await grammar;
    } catch (err) {
      cache.delete(key);
      throw new BackendError('bad_request', `the schema cannot be enforced: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return grammarFor;
}

/**
 * The token bias of one request: `logit_bias` (OpenAI's values are added to the logits, -100 to
 * 100; a token ID outside the model's vocabulary is the request's fault, checked here because only
 * the model knows its vocabulary, and because node-llama-cpp hands the IDs to native code
 * unchecked), and under a grammar a ban on every token whose text alone is not valid UTF-8
 * (byte-fallback tokens): llama.cpp's grammar counts a partial or invalid UTF-8 sequence as one
 * character, so a string `maxLength` could be met by the grammar and broken by the decoded text
 * (seen on the demo model). With whole-character tokens only, what the grammar accepted is what
 * the client gets. The banned list is built once per model, on first use.
 */
function createBiasBuilder(model: LlamaModel) {
  const vocabSize = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 0;
  let partialTokens: Token[] | null = null;
  let grammarOnly: TokenBias | null = null;
  const partial = (): Token[] => {
    partialTokens ??= Array.from({ length: vocabSize }, (_, t) => t as Token).filter((t) => model.detokenize([t], false).includes('\uFFFD'));
    return partialTokens;
  };
  return (logitBias: Readonly<Record<string, number>> | undefined, grammar: boolean): TokenBias | null => {
    if (logitBias === undefined) {
      if (!grammar) return null;
      if (grammarOnly === null) {
        grammarOnly = new TokenBias(model.tokenizer);
        for (const t of partial()) grammarOnly.set(t, 'never');
      }
      return grammarOnly;
    }
    const bias = new TokenBias(model.tokenizer);
    if (grammar) for (const t of partial()) bias.set(t, 'never');
    for (const [key, value] of Object.entries(logitBias)) {
      const token = Number(key);
      if (!Number.isSafeInteger(token) || token < 0 || token >= vocabSize) {
        throw new BackendError('bad_request', `logit_bias: token ${key} is not in this model's vocabulary (0 to ${vocabSize - 1})`);
      }
      bias.set(token as Token, { logit: value });
    }
    return bias;
  };
}

/** Default cap of the per-sequence context when `contextSize` is not given. */
const DEFAULT_MAX_CONTEXT_SIZE = 4096;

/** Refuses what node-llama-cpp must never see (the backend boundary; see fault-guard.ts for why). */
function checkInput(request: Pick<GenerateRequest, 'messages' | 'params'>): void {
  const invalid = checkGenerateInput(request);
  if (invalid !== null) throw new BackendError('bad_request', `invalid request for llama.cpp: ${invalid.message}`);
  const refused = refusedOn('llama-cpp', request.params.extras, 'by llama.cpp deployments');
  if (refused !== null) throw new BackendError('bad_request', refused.message);
}

/** Rejects requests that can never run on this context. */
function checkRequest(promptTokens: number, params: GenerateParams, contextSize: number): void {
  if (promptTokens + params.maxTokens > contextSize) {
    throw new BackendError(
      'context_length',
      `This model's context is ${contextSize} tokens; the prompt has ${promptTokens} and ` +
        `${params.maxTokens} more were requested for the completion.`,
    );
  }
}

/** Wraps failures that are neither aborts nor backend errors as transient backend errors. */
function toBackendFailure(error: unknown, signal: AbortSignal): unknown {
  if (signal.aborted || error instanceof BackendError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new BackendError('unavailable', `llama.cpp generation failed: ${message}`);
}

/**
 * Loads the model and creates the shared context, whose decode steps wait for every generating
 * sequence (`generating`: how many are; llama-cpp/full-batches.ts) when `fullSteps` is on;
 * disposes what it made if a later step fails.
 */
async function loadModelAndContext(options: LlamaCppBackendOptions, llama: Llama, generating: () => number) {
  const model = await llama.loadModel({ modelPath: options.modelPath });
  try {
    const contextSize = options.contextSize ?? Math.min(model.trainContextSize, DEFAULT_MAX_CONTEXT_SIZE);
    const context = await model.createContext({
      sequences: options.slots,
      contextSize,
      threads: options.threads,
      ...(options.fullSteps !== true ? {} : { batching: { itemPrioritizationStrategy: createFullBatchStrategy({ generating, onBatch: options.onBatch }) } }),
    });
    return { model, context };
  } catch (error) {
    await model.dispose();
    throw error;
  }
}

/**
 * Erases a sequence's KV state so the next request starts clean. A sequence that cannot be cleared,
 * or whose evaluation was left hanging by a fault (`poisoned`), is replaced by a fresh one (or
 * dropped when the context is gone).
 */
async function resetSequence(context: LlamaContext, sequence: LlamaContextSequence, poisoned = false): Promise<LlamaContextSequence | null> {
  try {
    if (poisoned) throw new Error('poisoned');
    await sequence.clearHistory();
    return sequence;
  } catch {
    try {
      if (!sequence.disposed) await sequence.dispose().catch(() => undefined);
      return context.disposed || context.sequencesLeft === 0 ? null : context.getSequence();
    } catch {
      return null;
    }
  }
}

/**
 * Creates the llama.cpp backend: loads the model once and opens one context with `slots`
 * sequences. `close()` rejects queued requests and disposes the context, the model and (when the
 * backend created it) the `Llama` instance.
 */
export async function createLlamaCppBackend(options: LlamaCppBackendOptions): Promise<LlamaCppBackend> {
  if (!Number.isInteger(options.slots) || options.slots < 1) throw new Error('slots must be a positive integer');
  const ownsLlama = options.llama === undefined;
  const llama = options.llama ?? (await getLlama({ build: 'never', gpu: options.gpu ?? false }));
  /** Requests inside their sampling loop: each queues a token for every decode step. */
  let generating = 0;
  const { model, context } = await loadModelAndContext(options, llama, () => generating).catch(async (error: unknown) => {
    if (ownsLlama) await llama.dispose();
    throw error;
  });
  faultGuard.open();
  const sequences = Array.from({ length: options.slots }, () => context.getSequence());
  const contextSize = sequences[0]?.contextSize ?? context.contextSize;
  const slots = new SlotQueue(sequences);
  const prepare = createPromptPreparer(model);
  const grammarFor = createGrammarCache(llama);
  const biasFor = createBiasBuilder(model);
  const validArguments = createArgumentsValidator();
  const progressEveryTokens = Math.max(1, options.progressEveryTokens ?? 16);
  const closedError = new BackendError('unavailable', 'llama.cpp backend is closed');
  const embedder = createEmbedder(model, { contextSize, threads: options.threads });
  let closing: Promise<void> | null = null;

  /** Runs one request on a borrowed sequence and always returns the sequence clean. */
  async function generate(request: GenerateRequest): Promise<GenerateResult> {
    if (closing !== null) throw closedError;
    checkInput(request);
    const tools = request.params.extras?.tools;
    const choice = request.params.extras?.tool_choice;
    // Checked by `checkInput` (refusedOn): a schema outside the grammar subset never gets here.
    const functions = tools !== undefined ? asBadRequest(() => toChatModelFunctions(tools)) : undefined;
    // A legacy completion's prompt is continued as written: no template, no template stops.
    const prompt = request.params.rawPrompt === true
      ? { tokens: tokenizeRawPrompt(model, request.messages[0]?.content ?? ''), templateStops: [], stopTokens: new Set<Token>(), wrapper: null }
      : prepare(request.messages, functions);
    checkRequest(prompt.tokens.length, request.params, contextSize);
    // A forced call (`required`, a named function) follows its grammar; otherwise `response_format`'s, if any.
    const forced = tools !== undefined && (choice === 'required' || typeof choice === 'object') ? asBadRequest(() => forcedCallGrammar(tools, choice)) : null;
    const grammar = forced !== null ? await grammarFor({ kind: 'schema', schema: forced.schema }) : await grammarFor(formatTarget(request.params.extras?.response_format));
    const tokenBias = biasFor(request.params.extras?.logit_bias, grammar !== null);
    // `auto` (the default with tools): free text until the wrapper's call prefix, then a grammar forcing one call.
    const syntax = tools !== undefined && (choice === undefined || choice === 'auto') && grammar === null && prompt.wrapper !== null ? callSyntaxOf(prompt.wrapper) : null;
    const callSwitch = syntax === null || tools === undefined ? undefined : {
      triggers: syntax.triggers,
      grammar: await autoCallGrammar(syntax, tools, choice, (schema) => grammarFor({ kind: 'schema', schema }), (text) => grammarFor({ kind: 'gbnf', text })),
      tokenBias: biasFor(request.params.extras?.logit_bias, true) ?? new TokenBias(model.tokenizer),
    };
    const sequence = await slots.acquire(request.signal, request.priority, request.fairnessKey);
    const generated: Token[] = [];
    const guard = faultGuard.register();
    let faulted = false;
    guard.fault.catch(() => {
      faulted = true;
    });
    // Streamed requests: the decoded text so far after each token, sent as deltas that are never
    // taken back (held back while they could still become a stop string or a call's prefix; the
    // text stops at the prefix). Not when the whole answer is a forced call (no content).
    const onDelta = tools !== undefined && choice !== 'none' && callSwitch === undefined ? undefined : request.onDelta;
    const deltas = onDelta ? createDeltaTracker([...prompt.templateStops, ...(request.params.stop ?? []), ...(callSwitch?.triggers ?? [])], onDelta) : null;
    try {
      const input = {
        prompt, params: request.params, signal: request.signal, onProgress: request.onProgress, progressEveryTokens,
        fault: guard.fault, faulted: () => faulted, grammar, tokenBias, callSwitch,
        onToken: deltas ? (tokens: readonly Token[]) => deltas.update(model.detokenize(tokens.filter((t) => !prompt.stopTokens.has(t)), false)) : undefined,
        // Counted (for the full-step strategy only) from the first sampled token, not from here: a
        // sequence still evaluating its prompt (or setting it up) does not queue a token per step,
        // and the full-step wait would spend its asks on it.
        onSampling: options.fullSteps === true ? (sampling: boolean) => {
          generating += sampling ? 1 : -1;
        } : undefined,
      };
      const outcome = await generateOnSequence(model, sequence, input, generated);
      const switched = outcome.switched;
      const content = switched !== null ? switched.content : decodeContent(model, outcome);
      deltas?.finish(content);
      const call = tools === undefined || choice === 'none' || prompt.wrapper === null ? null
        : forced !== null ? readForcedCall(content, tools, choice, forced.envelope)
        : switched !== null ? readTemplateCall(switched.trigger + switchedCallText(model, outcome.tokens, switched), prompt.wrapper, tools, choice, validArguments)
        : callSwitch === undefined ? readTemplateCall(content, prompt.wrapper, tools, choice, validArguments) : null;
      const counts = { promptTokens: prompt.tokens.length, completionTokens: outcome.tokens.length };
      const contentTokens = switched !== null ? switched.contentTokens : outcome.contentTokenCount;
      const logprobs = outcome.logprobs !== null ? { logprobs: outcome.logprobs.slice(0, contentTokens) } : {};
      if (call !== null) {
        // One call per answer (so `parallel_tool_calls: false` always holds); its ID is given by the activity.
        return { content: switched !== null ? content : '', toolCalls: [{ id: '', type: 'function', function: call }], finishReason: 'tool_calls', ...counts, ...(switched !== null ? logprobs : {}) };
      }
      // A call cut by `max_tokens` is dropped: the answer is the text before it (finish reason `length`).
      return { content, finishReason: outcome.finishReason, ...counts, ...logprobs };
    } catch (error) {
      const failure = toBackendFailure(error, request.signal);
      // Once a token came out, the prompt was evaluated: that and the tokens so far were spent.
      if (generated.length === 0) throw failure;
      throw new InterruptedGeneration(failure, { promptTokens: prompt.tokens.length, completionTokens: generated.length });
    } finally {
      guard.done();
      const clean = await resetSequence(context, sequence, faulted);
      if (clean !== null) slots.release(clean);
    }
  }

  /** Stops accepting work and frees the native resources (once; later calls share the first). */
  function close(): Promise<void> {
    closing ??= (async () => {
      slots.close(closedError);
      faultGuard.close();
      await embedder.dispose();
      await context.dispose();
      await model.dispose();
      if (ownsLlama) await llama.dispose();
    })();
    return closing;
  }

  return {
    generate,
    embed: (request) => {
      if (closing !== null) return Promise.reject(closedError);
      return embedder.embed(request);
    },
    close,
    countTokens: (text) => tokenizeRawPrompt(model, text).length,
    contextSize,
  };
}
