/**
 * The llama.cpp inference backend (through node-llama-cpp 3.x).
 *
 * One model, one context holding `slots` sequences: requests that run at the same time share the
 * context and node-llama-cpp batches their decoding. A request takes a free sequence (or waits for
 * one, first come first served), evaluates its prompt, samples token by token with the low-level
 * sequence API, and always erases the sequence's KV state before handing it on.
 *
 * Chat formatting:
 * - if the GGUF carries a chat template (`tokenizer.chat_template`), node-llama-cpp's
 *   `resolveChatWrapper(model)` picks the matching wrapper (a specialised one or the Jinja
 *   template itself) and renders the conversation, with special tokens, plus the wrapper's stop
 *   triggers;
 * - otherwise the plain template of {@link formatPlainChatPrompt} is used, tokenized without
 *   special tokens (so message text can never forge a control token), after a BOS token when the
 *   model asks for one, with `"\n\nUser:"` as an extra stop string.
 *
 * Faults: every request is checked by the shared validator (domain/sampling-params.ts) before
 * node-llama-cpp sees it, since its sampler throws inside a decode loop that runs in a promise
 * nobody awaits (`LlamaContext.dispatchPendingBatch`): such a throw is an unhandled rejection,
 * which ends a Node process, and leaves the sequence waiting forever. Against what the validator
 * cannot foresee, the {@link faultGuard} catches unhandled rejections raised from node-llama-cpp's
 * code while a backend is open and fails the generations in flight instead (each attempt fails as
 * `unavailable` and is retried; their sequences are replaced, never reused).
 */
import {
  getLlama,
  resolveChatWrapper,
  SpecialToken,
  SpecialTokensText,
  type ChatHistoryItem,
  type ChatWrapper,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type LlamaText,
  type Token,
} from 'node-llama-cpp';

import { checkGenerateInput } from '../../domain/sampling-params.js';
import {
  BackendError,
  InterruptedGeneration,
  type ChatMessage,
  type GenerateParams,
  type GenerateRequest,
  type GenerateResult,
  type InferenceBackend,
} from './types.js';

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

/** A rendered prompt: its tokens and the extra ways generation ends besides EOG tokens. */
interface PreparedPrompt {
  tokens: Token[];
  /** Stop strings implied by the chat template (request stops are added to these). */
  templateStops: string[];
  /** Non-EOG single tokens that end the answer (from a chat wrapper's stop triggers). */
  stopTokens: ReadonlySet<Token>;
}

/** Turns chat messages into a prompt for the loaded model. */
type PromptPreparer = (messages: readonly ChatMessage[]) => PreparedPrompt;

/** Role labels of the plain template. */
const PLAIN_ROLE_LABELS: Record<ChatMessage['role'], string> = {
  system: 'System',
  developer: 'Developer',
  user: 'User',
  assistant: 'Assistant',
  tool: 'Tool',
};

/** Stop strings that the plain template adds to every request. */
export const PLAIN_TEMPLATE_STOPS: readonly string[] = ['\n\nUser:'];

/** Default cap of the per-sequence context when `contextSize` is not given. */
const DEFAULT_MAX_CONTEXT_SIZE = 4096;

/**
 * Renders messages with the plain template used for models without a chat template: each message
 * as `Label: content`, separated by blank lines, ending with an open `Assistant:` turn. Labels are
 * System, Developer, User, Assistant and Tool.
 *
 * @example
 * formatPlainChatPrompt([{ role: 'user', content: 'Hi' }]) // 'User: Hi\n\nAssistant:'
 */
export function formatPlainChatPrompt(messages: readonly ChatMessage[]): string {
  const turns = messages.map((message) => `${PLAIN_ROLE_LABELS[message.role]}: ${message.content}`);
  return [...turns, `${PLAIN_ROLE_LABELS.assistant}:`].join('\n\n');
}

/** Tokenizes `text` as a raw prompt: BOS when the model wants one, no special-token parsing. */
function tokenizeRawPrompt(model: LlamaModel, text: string): Token[] {
  const bos = model.tokens.bos;
  const tokens = model.tokenize(text, false);
  return model.tokens.shouldPrependBosToken && bos !== null ? [bos, ...tokens] : tokens;
}

/** Maps our messages onto node-llama-cpp's chat history, ending with an open model turn. */
function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = messages.map((message): ChatHistoryItem => {
    switch (message.role) {
      case 'system':
      case 'developer':
        return { type: 'system', text: message.content };
      case 'user':
        return { type: 'user', text: message.content };
      case 'tool':
        return { type: 'user', text: `Tool result:\n${message.content}` };
      case 'assistant':
        return { type: 'model', response: [message.content] };
    }
  });
  history.push({ type: 'model', response: [] });
  return history;
}

/** A stop trigger's values as text pieces and special tokens (as node-llama-cpp's stop detector sees them). */
function resolveTrigger(model: LlamaModel, trigger: LlamaText): (string | Token)[] {
  return trigger.values.flatMap((value): (string | Token)[] => {
    if (typeof value === 'string') return value === '' ? [] : [value];
    if (value instanceof SpecialToken) return value.tokenize(model.tokenizer);
    if (value instanceof SpecialTokensText) return value.tokenizeSpecialTokensOnly(model.tokenizer);
    return [];
  });
}

/**
 * Splits a chat wrapper's stop triggers into plain stop strings and single stop tokens. Triggers
 * mixing text and tokens are left out: in practice they end with an EOG token, which stops
 * generation anyway.
 */
function splitStopTriggers(model: LlamaModel, triggers: readonly LlamaText[]) {
  const strings: string[] = [];
  const tokens = new Set<Token>();
  for (const trigger of triggers) {
    const parts = resolveTrigger(model, trigger);
    const [first] = parts;
    if (parts.length === 1 && typeof first === 'number') tokens.add(first);
    else if (parts.length > 0 && parts.every((part) => typeof part === 'string')) strings.push(parts.join(''));
  }
  return { strings, tokens };
}

/** A preparer that renders through a node-llama-cpp chat wrapper. */
function createWrapperPreparer(model: LlamaModel, wrapper: ChatWrapper): PromptPreparer {
  return (messages) => {
    const state = wrapper.generateContextState({ chatHistory: toChatHistory(messages) });
    const stops = splitStopTriggers(model, state.stopGenerationTriggers);
    return {
      tokens: state.contextText.tokenize(model.tokenizer),
      templateStops: stops.strings,
      stopTokens: stops.tokens,
    };
  };
}

/** Chooses the chat formatting for the model: its own template if it has one, else the plain one. */
function createPromptPreparer(model: LlamaModel): PromptPreparer {
  if (model.fileInfo.metadata.tokenizer.chat_template !== undefined) {
    return createWrapperPreparer(model, resolveChatWrapper(model));
  }
  return (messages) => ({
    tokens: tokenizeRawPrompt(model, formatPlainChatPrompt(messages)),
    templateStops: [...PLAIN_TEMPLATE_STOPS],
    stopTokens: new Set(),
  });
}

/** Whether an unhandled rejection came from node-llama-cpp's own code (its decode loop). */
function isLlamaFault(reason: unknown): boolean {
  return reason instanceof Error && /node-llama-cpp/.test(reason.stack ?? '');
}

/**
 * The process's guard against node-llama-cpp's unawaited decode loop. While at least one backend
 * is open it listens for `unhandledRejection`: a rejection from node-llama-cpp's code fails every
 * generation in flight in this process (which one the failed batch served cannot be known; the
 * others are retried), one from elsewhere is rethrown as Node would when no other listener
 * decides. Process-wide state by nature: the event is the process's.
 */
export const faultGuard = {
  /** Fails a generation in flight, by the function its `register` returned. */
  inFlight: new Set<(error: unknown) => void>(),
  openBackends: 0,
  /** Faults seen (for tests and logs). */
  faults: 0,
  listener(reason: unknown): void {
    if (!isLlamaFault(reason)) {
      if (process.listenerCount('unhandledRejection') === 1) throw reason;
      return;
    }
    faultGuard.faults += 1;
    const failing = [...faultGuard.inFlight];
    process.emitWarning(`node-llama-cpp failed in its decode loop (${failing.length} generation(s) failed): ${reason instanceof Error ? reason.message : String(reason)}`, 'SluiceLlamaFault');
    for (const fail of failing) fail(reason);
  },
  open(): void {
    if (faultGuard.openBackends++ === 0) process.on('unhandledRejection', faultGuard.listener);
  },
  close(): void {
    if (--faultGuard.openBackends === 0) process.off('unhandledRejection', faultGuard.listener);
  },
  /** A generation starts decoding: `fault` rejects if node-llama-cpp fails meanwhile; call `done` at its end. */
  register(): { fault: Promise<never>; done: () => void } {
    let fail: (error: unknown) => void = () => undefined;
    const fault = new Promise<never>((_, reject) => {
      fail = reject;
    });
    fault.catch(() => undefined);
    faultGuard.inFlight.add(fail);
    return { fault, done: () => faultGuard.inFlight.delete(fail) };
  },
};

/** A waiter for a free sequence. */
interface SlotWaiter<T> {
  resolve(item: T): void;
  reject(error: unknown): void;
}

/**
 * A pool of items (the context's sequences) in two classes: every interactive waiter is served
 * before any batch waiter, first come first served; batch waiters take turns by fairness key (the
 * tenant), first come first served within a key, so one tenant's queued chunk of lines does not
 * hold back another's. `acquire` resolves at once when an item is free, otherwise when one is
 * released to this waiter; an abort removes the waiter.
 */
export class SlotQueue<T> {
  private readonly free: T[];
  private readonly interactive: SlotWaiter<T>[] = [];
  /** Batch waiters by fairness key; the Map's order is the keys' turn order. */
  private readonly batch = new Map<string, SlotWaiter<T>[]>();
  private closedError: Error | null = null;

  constructor(items: Iterable<T>) {
    this.free = [...items];
  }

  /** Requests waiting for an item. */
  get waiting(): number {
    let n = this.interactive.length;
    for (const line of this.batch.values()) n += line.length;
    return n;
  }

  /** Takes a free item, or waits in line for one. Rejects with the signal's reason on abort. */
  acquire(signal: AbortSignal, priority: 'interactive' | 'batch' = 'interactive', fairnessKey = ''): Promise<T> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    if (signal.aborted) return Promise.reject(signal.reason);
    const item = this.free.shift();
    if (item !== undefined) return Promise.resolve(item);
    let line = this.interactive;
    if (priority === 'batch') {
      line = this.batch.get(fairnessKey) ?? [];
      if (line.length === 0) this.batch.set(fairnessKey, line);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        const index = line.indexOf(waiter);
        if (index >= 0) line.splice(index, 1);
        if (priority === 'batch' && line.length === 0 && this.batch.get(fairnessKey) === line) this.batch.delete(fairnessKey);
        reject(signal.reason);
      };
      const waiter: SlotWaiter<T> = {
        resolve: (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      line.push(waiter);
    });
  }

  /** The next batch waiter: the first of the key whose turn it is; that key then goes last. */
  private nextBatchWaiter(): SlotWaiter<T> | undefined {
    for (const [key, line] of this.batch) {
      this.batch.delete(key);
      const waiter = line.shift();
      if (line.length > 0) this.batch.set(key, line);
      if (waiter !== undefined) return waiter;
    }
    return undefined;
  }

  /** Hands the item to the oldest interactive waiter, else to the batch key whose turn it is, or puts it back in the free list. */
  release(item: T): void {
    const waiter = this.interactive.shift() ?? this.nextBatchWaiter();
    if (waiter !== undefined) waiter.resolve(item);
    else this.free.push(item);
  }

  /** Rejects every waiter and all later `acquire` calls with `error`. */
  close(error: Error): void {
    this.closedError = error;
    const waiters = [...this.interactive.splice(0), ...[...this.batch.values()].flat()];
    this.batch.clear();
    for (const waiter of waiters) waiter.reject(error);
  }
}

/** What {@link generateOnSequence} needs besides the sequence. */
interface GenerationInput {
  prompt: PreparedPrompt;
  params: GenerateParams;
  signal: AbortSignal;
  onProgress: ((completionTokens: number, promptTokens: number) => void) | undefined;
  progressEveryTokens: number;
  /** Rejects when node-llama-cpp failed outside this call (see {@link faultGuard}). */
  fault: Promise<never>;
  /** Whether `fault` has rejected. */
  faulted: () => boolean;
}

/** Why generation ended, with the generated tokens and where the answer's text ends. */
interface GenerationOutcome {
  tokens: Token[];
  finishReason: GenerateResult['finishReason'];
  /** Tokens of `tokens` that belong to the answer (a stop token is excluded). */
  contentTokenCount: number;
  /** Stop strings to cut the decoded text at. */
  stops: string[];
}

/** Sampling options for node-llama-cpp: OpenAI semantics (no top-k; top-p 1 unless given). */
function samplingOptions(params: GenerateParams) {
  return {
    temperature: params.temperature,
    topK: 0,
    topP: params.topP ?? 1,
    minP: 0,
    seed: params.seed ?? Math.floor(Math.random() * 2 ** 31),
  };
}

/**
 * Whether a stop string ends inside the recent tokens. Only a tail is decoded (each step checks
 * the newest token), so the cost per token does not grow with the answer.
 */
function tailHasStop(model: LlamaModel, tokens: readonly Token[], stops: readonly string[]): boolean {
  if (stops.length === 0) return false;
  const tailLength = 4 * Math.max(...stops.map((stop) => stop.length)) + 4;
  const tailStart = Math.max(0, tokens.length - tailLength);
  const tail = model.detokenize(tokens.slice(tailStart), false, tokens.slice(Math.max(0, tailStart - 8), tailStart));
  return stops.some((stop) => tail.includes(stop));
}

/**
 * Samples tokens on `sequence` until an end condition; the caller clears the sequence afterwards.
 * Pushes every generated token to `tokens` (the caller's, so an interrupted generation's count is known).
 */
async function generateOnSequence(
  model: LlamaModel,
  sequence: LlamaContextSequence,
  input: GenerationInput,
  tokens: Token[],
): Promise<GenerationOutcome> {
  const { params, signal, onProgress, progressEveryTokens, prompt, fault } = input;
  const stops = [...prompt.templateStops, ...(params.stop ?? [])].filter((stop) => stop !== '');
  let finishReason: GenerateResult['finishReason'] = 'stop';
  let contentTokenCount: number | null = null;
  const evaluation = sequence.evaluate(prompt.tokens, samplingOptions(params))[Symbol.asyncIterator]();
  let ended = false;
  try {
    for (;;) {
      // A fault in node-llama-cpp's decode loop never settles `next()`: the guard's rejection ends the wait.
      const pending = evaluation.next();
      pending.catch(() => undefined); // settled after a fault, if ever: already answered by the race
      const next = await Promise.race([pending, fault]);
      if (next.done === true) {
        ended = true;
        break;
      }
      const token = next.value;
      signal.throwIfAborted();
      tokens.push(token);
      if (onProgress !== undefined && tokens.length % progressEveryTokens === 0) onProgress(tokens.length, prompt.tokens.length);
      if (prompt.stopTokens.has(token)) {
        contentTokenCount = tokens.length - 1;
        break;
      }
      if (tailHasStop(model, tokens, stops)) break;
      if (tokens.length >= params.maxTokens) {
        finishReason = 'length';
        break;
      }
    }
  } finally {
    // As `for await` does on an early exit: the generator releases the sequence's evaluation lock.
    // Not after a fault: its `next()` never settles, so neither would `return()`.
    if (!ended && !input.faulted()) await evaluation.return?.(undefined);
  }
  signal.throwIfAborted();
  onProgress?.(tokens.length, prompt.tokens.length);
  return { tokens, finishReason, contentTokenCount: contentTokenCount ?? tokens.length, stops };
}

/**
 * Decodes the answer in one go (multi-byte characters may span byte tokens) and cuts it at the
 * first stop. Decoding without preceding tokens drops the SentencePiece leading space, as chat
 * content should.
 */
function decodeContent(model: LlamaModel, outcome: GenerationOutcome): string {
  const text = model.detokenize(outcome.tokens.slice(0, outcome.contentTokenCount), false);
  const cut = Math.min(...outcome.stops.map((stop) => text.indexOf(stop)).filter((index) => index >= 0));
  return Number.isFinite(cut) ? text.slice(0, cut) : text;
}

/** Refuses what node-llama-cpp must never see (the backend boundary; see the top of this file). */
function checkInput(request: Pick<GenerateRequest, 'messages' | 'params'>): void {
  const invalid = checkGenerateInput(request);
  if (invalid !== null) throw new BackendError('bad_request', `invalid request for llama.cpp: ${invalid.message}`);
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

/** Loads the model and creates the shared context; disposes what it made if a later step fails. */
async function loadModelAndContext(options: LlamaCppBackendOptions, llama: Llama) {
  const model = await llama.loadModel({ modelPath: options.modelPath });
  try {
    const contextSize = options.contextSize ?? Math.min(model.trainContextSize, DEFAULT_MAX_CONTEXT_SIZE);
    const context = await model.createContext({
      sequences: options.slots,
      contextSize,
      threads: options.threads,
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
  const { model, context } = await loadModelAndContext(options, llama).catch(async (error: unknown) => {
    if (ownsLlama) await llama.dispose();
    throw error;
  });
  faultGuard.open();
  const sequences = Array.from({ length: options.slots }, () => context.getSequence());
  const contextSize = sequences[0]?.contextSize ?? context.contextSize;
  const slots = new SlotQueue(sequences);
  const prepare = createPromptPreparer(model);
  const progressEveryTokens = Math.max(1, options.progressEveryTokens ?? 16);
  const closedError = new BackendError('unavailable', 'llama.cpp backend is closed');
  let closing: Promise<void> | null = null;

  /** Runs one request on a borrowed sequence and always returns the sequence clean. */
  async function generate(request: GenerateRequest): Promise<GenerateResult> {
    if (closing !== null) throw closedError;
    checkInput(request);
    const prompt = prepare(request.messages);
    checkRequest(prompt.tokens.length, request.params, contextSize);
    const sequence = await slots.acquire(request.signal, request.priority, request.fairnessKey);
    const generated: Token[] = [];
    const guard = faultGuard.register();
    let faulted = false;
    guard.fault.catch(() => {
      faulted = true;
    });
    try {
      const input = {
        prompt, params: request.params, signal: request.signal, onProgress: request.onProgress, progressEveryTokens,
        fault: guard.fault, faulted: () => faulted,
      };
      const outcome = await generateOnSequence(model, sequence, input, generated);
      return {
        content: decodeContent(model, outcome),
        finishReason: outcome.finishReason,
        promptTokens: prompt.tokens.length,
        completionTokens: outcome.tokens.length,
      };
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
      await context.dispose();
      await model.dispose();
      if (ownsLlama) await llama.dispose();
    })();
    return closing;
  }

  return {
    generate,
    close,
    countTokens: (text) => tokenizeRawPrompt(model, text).length,
    contextSize,
  };
}
