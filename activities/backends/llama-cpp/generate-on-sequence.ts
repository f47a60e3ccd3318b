/**
 * The sampling and stop loop of the llama.cpp backend: evaluates a prepared prompt on one sequence,
 * samples token by token with the low-level sequence API until an end condition (EOG, a stop token
 * or string, `maxTokens`, an abort or a fault), and decodes the answer.
 */
import type { LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

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
  /** Called after each generated token with all tokens so far (streamed requests). @default undefined */
  onToken?: ((tokens: readonly Token[]) => void) | undefined;
}

/** Why generation ended, with the generated tokens and where the answer's text ends. */
export interface GenerationOutcome {
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
export async function generateOnSequence(
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
      input.onToken?.(tokens);
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
export function decodeContent(model: LlamaModel, outcome: GenerationOutcome): string {
  const text = model.detokenize(outcome.tokens.slice(0, outcome.contentTokenCount), false);
  const cut = Math.min(...outcome.stops.map((stop) => text.indexOf(stop)).filter((index) => index >= 0));
  return Number.isFinite(cut) ? text.slice(0, cut) : text;
}
