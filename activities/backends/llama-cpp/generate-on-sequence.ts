/**
 * The sampling and stop loop of the llama.cpp backend: evaluates a prepared prompt on one sequence,
 * samples token by token with the low-level sequence API until an end condition (EOG, a stop token
 * or string, `maxTokens`, an abort or a fault), and decodes the answer.
 */
import { LlamaGrammarEvaluationState, TokenBias, type LlamaContextSequence, type LlamaGrammar, type LlamaModel, type Token } from 'node-llama-cpp';

import type { TokenLogprob } from '../../../contracts/chat.js';
import type { GenerateParams, GenerateResult } from '../types.js';
import type { PreparedPrompt } from './prompt-preparer.js';

/** What {@link generateOnSequence} needs besides the sequence. */
export interface GenerationInput {
  prompt: PreparedPrompt;
  params: GenerateParams;
  signal: AbortSignal;
  onProgress: ((completionTokens: number, promptTokens: number) => void) | undefined;
  progressEveryTokens: number;
  /** Rejects when node-llama-cpp failed outside this call (see `faultGuard` in fault-guard.ts). */
  fault: Promise<never>;
  /** Whether `fault` has rejected. */
  faulted: () => boolean;
  /** The grammar the output must follow (`response_format`), or null. */
  grammar: LlamaGrammar | null;
  /** Token biases (banned or favoured tokens), or null. */
  tokenBias: TokenBias | null;
  /** Called after each generated token with all tokens so far (streamed requests). @default undefined */
  onToken?: ((tokens: readonly Token[]) => void) | undefined;
  /** `tool_choice: "auto"`: where a call starts and the grammar that forces it from there. @default undefined */
  callSwitch?: CallSwitch | undefined;
  /**
   * Called with `true` when the sampling loop gets its first token (the prompt is evaluated: from
   * then on the sequence queues one token for each decode step) and with `false` once when the
   * loop ends, before the sequence's evaluation is released. Not called when no token came (the
   * prompt's evaluation failed or was aborted). The backend's count of generating sequences
   * (`full-batches.ts`). @default undefined
   */
  onSampling?: ((sampling: boolean) => void) | undefined;
}

/**
 * The switch from free text to a call (`tool_choice: "auto"`): once one of `triggers` appears in
 * the generated text, the text before it is the answer's content and sampling goes on under
 * `grammar` (one call to one of the tools, see call-grammar.ts) with `tokenBias`, until the grammar
 * is complete (only an end-of-generation token is left) or `maxTokens` is reached.
 */
export interface CallSwitch {
  triggers: readonly string[];
  grammar: LlamaGrammar;
  tokenBias: TokenBias;
}

/** Where generation switched to a call: the content before the trigger and the first token sampled under the call grammar. */
export interface SwitchedCall {
  content: string;
  /** The trigger that started the call. */
  trigger: string;
  /** Index in `tokens` of the first token of the call after the trigger. */
  callFrom: number;
  /** Tokens of `tokens` wholly before the trigger (the content's logprobs). */
  contentTokens: number;
}

/** Why generation ended, with the generated tokens and where the answer's text ends. */
export interface GenerationOutcome {
  tokens: Token[];
  finishReason: GenerateResult['finishReason'];
  /** Tokens of `tokens` that belong to the answer (a stop token is excluded). */
  contentTokenCount: number;
  /** Stop strings to cut the decoded text at. */
  stops: string[];
  /** Trailing whitespace is not part of the answer (a grammar that allows it after the value). */
  trimWhitespaceSuffix: boolean;
  /** Per generated token, when the request asked for `logprobs`. */
  logprobs: TokenLogprob[] | null;
  /** Set when a {@link CallSwitch} trigger appeared. */
  switched: SwitchedCall | null;
}

/** A token's text and UTF-8 bytes, as OpenAI reports them. */
function tokenText(model: LlamaModel, token: Token): { token: string; bytes: number[] } {
  const text = model.detokenize([token], false);
  return { token: text, bytes: [...Buffer.from(text, 'utf8')] };
}

/** The chosen token's log probability and the `top` most likely tokens of the model's distribution. */
function logprobOf(model: LlamaModel, token: Token, probabilities: ReadonlyMap<Token, number>, top: number): TokenLogprob {
  const best: Array<[Token, number]> = [];
  if (top > 0) {
    for (const entry of probabilities) {
      if (best.length === top && entry[1] <= (best[top - 1] as [Token, number])[1]) continue;
      let i = best.length;
      while (i > 0 && (best[i - 1] as [Token, number])[1] < entry[1]) i--;
      best.splice(i, 0, entry);
      if (best.length > top) best.pop();
    }
  }
  const logprob = (p: number | undefined) => (p !== undefined && p > 0 ? Math.log(p) : -9999);
  return {
    ...tokenText(model, token),
    logprob: logprob(probabilities.get(token)),
    top_logprobs: best.map(([t, p]) => ({ ...tokenText(model, t), logprob: logprob(p) })),
  };
}

/**
 * The text triggers that end a grammar's output (node-llama-cpp's JSON grammars allow whitespace
 * after the value and stop at four newlines), as strings.
 */
function grammarStops(grammar: LlamaGrammar | null): string[] {
  if (grammar === null) return [];
  return grammar.stopGenerationTriggers.flatMap((trigger) => {
    if (typeof trigger === 'string') return [trigger];
    if (Array.isArray(trigger)) return trigger.every((part) => typeof part === 'string') ? [trigger.join('')] : [];
    return [String(trigger)];
  });
}

/** The call grammar's state once a {@link CallSwitch} has switched (read by the sampler before each token). */
interface CallMode {
  state: LlamaGrammarEvaluationState | null;
  tokenBias: TokenBias;
}

/**
 * Sampling options for node-llama-cpp: OpenAI semantics (no top-k; top-p 1 unless given); a grammar
 * constrains each token. With a call switch, the grammar and the bias are read before each token,
 * so the call grammar takes over from the token after its trigger.
 */
function samplingOptions(model: LlamaModel, params: GenerateParams, grammar: LlamaGrammar | null, tokenBias: TokenBias | null, generated: readonly Token[], call: CallMode | null) {
  const presencePenalty = params.extras?.presence_penalty ?? 0;
  const frequencyPenalty = params.extras?.frequency_penalty ?? 0;
  const state = grammar !== null ? new LlamaGrammarEvaluationState({ model, grammar }) : undefined;
  const freeBias = tokenBias ?? new TokenBias(model.tokenizer);
  return {
    temperature: params.temperature,
    topK: 0,
    topP: params.topP ?? 1,
    minP: 0,
    seed: params.seed ?? Math.floor(Math.random() * 2 ** 31),
    ...(call !== null
      ? { grammarEvaluationState: () => call.state ?? state, tokenBias: () => (call.state !== null ? call.tokenBias : freeBias) }
      : { ...(state !== undefined ? { grammarEvaluationState: state } : {}), ...(tokenBias !== null ? { tokenBias } : {}) }),
    // OpenAI's penalties: over the tokens generated so far, no multiplicative repeat penalty.
    ...(presencePenalty !== 0 || frequencyPenalty !== 0
      ? { repeatPenalty: { punishTokens: () => [...generated], penalty: 1, presencePenalty, frequencyPenalty } }
      : {}),
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
 * At the token that completed a trigger: the content before the trigger, and (when that token's
 * text goes on past the trigger) tokens of its text up to the trigger's end, which replace it, so
 * the call grammar starts right after the trigger.
 */
function cutAtTrigger(model: LlamaModel, tokens: Token[], triggers: readonly string[]): { switched: SwitchedCall; replacement: Token[] | undefined } {
  const text = model.detokenize(tokens, false);
  let at = -1;
  let trigger = '';
  for (const t of triggers) {
    const i = text.indexOf(t);
    if (i >= 0 && (at < 0 || i < at)) [at, trigger] = [i, t];
  }
  const last = tokens.length - 1;
  const before = model.detokenize(tokens.slice(0, last), false);
  const end = at + trigger.length;
  let replacement: Token[] | undefined;
  if (end < text.length && end > before.length && text.startsWith(before)) {
    replacement = model.tokenize(text.slice(before.length, end), false, 'trimLeadingSpace');
    tokens.splice(last, 1, ...replacement);
  }
  return { switched: { content: text.slice(0, at), trigger, callFrom: tokens.length, contentTokens: last }, replacement };
}

/**
 * Samples tokens on `sequence` until an end condition; the caller clears the sequence afterwards.
 * Pushes every generated token to `tokens` (the caller's, so an interrupted generation's count is known).
 */
export async function generateOnSequence(
  model: LlamaModel,
  sequence: LlamaContextSequence,
  input: GenerationInput,
  tokens: Token[],
): Promise<GenerationOutcome> {
  const { params, signal, onProgress, progressEveryTokens, prompt, fault } = input;
  const stops = [...prompt.templateStops, ...(params.stop ?? []), ...grammarStops(input.grammar)].filter((stop) => stop !== '');
  let finishReason: GenerateResult['finishReason'] = 'stop';
  let contentTokenCount: number | null = null;
  const callSwitch = input.callSwitch;
  const callMode: CallMode | null = callSwitch !== undefined ? { state: null, tokenBias: callSwitch.tokenBias } : null;
  let switched: SwitchedCall | null = null;
  let replacement: Token[] | undefined;
  const options = samplingOptions(model, params, input.grammar, input.tokenBias, tokens, callMode);
  const logprobs: TokenLogprob[] | null = params.extras?.logprobs === true ? [] : null;
  const top = params.extras?.top_logprobs ?? 0;
  // With `logprobs`, the variant of evaluate that reports the model's distribution of each token.
  const evaluation = (logprobs !== null
    ? sequence.evaluateWithMetadata(prompt.tokens, { probabilities: true }, options)[Symbol.asyncIterator]()
    : sequence.evaluate(prompt.tokens, options)[Symbol.asyncIterator]()) as AsyncGenerator<Token | { token: Token; probabilities: Map<Token, number> }, void, void>;
  let ended = false;
  let sampling = false;
  try {
    for (;;) {
      // A fault in node-llama-cpp's decode loop never settles `next()`: the guard's rejection ends the wait.
      // After a trigger, its cut tokens are evaluated in place of the token sampled last.
      const pending = evaluation.next(replacement as never);
      replacement = undefined;
      pending.catch(() => undefined); // settled after a fault, if ever: already answered by the race
      const next = await Promise.race([pending, fault]);
      if (next.done === true) {
        ended = true;
        break;
      }
      const value = next.value;
      const token = typeof value === 'number' ? value : value.token;
      if (!sampling) {
        sampling = true;
        input.onSampling?.(true);
      }
      signal.throwIfAborted();
      tokens.push(token);
      if (logprobs !== null && typeof value !== 'number') logprobs.push(logprobOf(model, token, value.probabilities, top));
      if (callSwitch !== undefined && callMode !== null && switched === null && tailHasStop(model, tokens, callSwitch.triggers)) {
        ({ switched, replacement } = cutAtTrigger(model, tokens, callSwitch.triggers));
        callMode.state = new LlamaGrammarEvaluationState({ model, grammar: callSwitch.grammar });
      }
      input.onToken?.(tokens);
      if (onProgress !== undefined && tokens.length % progressEveryTokens === 0) onProgress(tokens.length, prompt.tokens.length);
      if (prompt.stopTokens.has(token)) {
        contentTokenCount = tokens.length - 1;
        break;
      }
      // A call's arguments are not cut by stop strings (only the answer's text is).
      if (switched === null && tailHasStop(model, tokens, stops)) break;
      if (tokens.length >= params.maxTokens) {
        finishReason = 'length';
        break;
      }
    }
  } finally {
    // No more tokens will be queued: the decode steps stop waiting for this sequence at once.
    if (sampling) input.onSampling?.(false);
    // As `for await` does on an early exit: the generator releases the sequence's evaluation lock.
    // Not after a fault: its `next()` never settles, so neither would `return()`.
    if (!ended && !input.faulted()) await evaluation.return?.(undefined);
  }
  signal.throwIfAborted();
  onProgress?.(tokens.length, prompt.tokens.length);
  return { tokens, finishReason, contentTokenCount: contentTokenCount ?? tokens.length, stops, trimWhitespaceSuffix: input.grammar?.trimWhitespaceSuffix ?? false, logprobs, switched };
}

/**
 * Decodes the answer in one go (multi-byte characters may span byte tokens) and cuts it at the
 * first stop. Decoding without preceding tokens drops the SentencePiece leading space, as chat
 * content should.
 */
export function decodeContent(model: LlamaModel, outcome: GenerationOutcome): string {
  const text = model.detokenize(outcome.tokens.slice(0, outcome.contentTokenCount), false);
  const cut = Math.min(...outcome.stops.map((stop) => text.indexOf(stop)).filter((index) => index >= 0));
  const content = Number.isFinite(cut) ? text.slice(0, cut) : text;
  return outcome.trimWhitespaceSuffix ? content.trimEnd() : content;
}

/** A switched call's text after its trigger (decoded after the tokens before it, so a leading space stays). */
export function switchedCallText(model: LlamaModel, tokens: readonly Token[], switched: SwitchedCall): string {
  return model.detokenize(tokens.slice(switched.callFrom), false, tokens.slice(Math.max(0, switched.callFrom - 8), switched.callFrom));
}
