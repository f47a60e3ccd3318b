/**
 * `tool_choice: "auto"` on real llama.cpp, with the demo model whose vocabulary has the general
 * wrapper's call prefix as one token (test/support/calls-gguf.ts), favoured with `logit_bias` so
 * the random model starts calls. Asserts shapes, schema validity (ajv), determinism and how the
 * text streams, never the text itself. Threads: 1 (see llama-cpp.test.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ajv } from 'ajv';
import { getLlama, type Llama } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createLlamaCppBackend, type LlamaCppBackend } from '../../activities/backends/llama-cpp.js';
import type { GenerateParams, GenerateRequest, GenerateResult } from '../../activities/backends/types.js';
import type { ToolDefinition } from '../../contracts/chat.js';
import { callPrefixToken, writeCallsGguf } from '../support/calls-gguf.js';
import { lookupSchema, schemaOf, weatherSchema } from '../support/tool-schemas.js';

const tools: ToolDefinition[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Current weather of a city', parameters: weatherSchema } },
  { type: 'function', function: { name: 'lookup', parameters: lookupSchema } },
];
const ajv = new Ajv({ strict: false });

let dir: string;
let llama: Llama;
let backend: LlamaCppBackend;
let prefixToken: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-calls-'));
  const modelPath = join(dir, 'calls.gguf');
  await writeCallsGguf(modelPath);
  prefixToken = await callPrefixToken(modelPath);
  llama = await getLlama({ build: 'never', gpu: false });
  // Progress after every token: the tests see how many tokens were out when each delta came.
  backend = await createLlamaCppBackend({ modelPath, slots: 2, threads: 1, contextSize: 1024, llama, progressEveryTokens: 1 });
});

afterAll(async () => {
  await backend?.close();
  await llama?.dispose();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** One generation with the tools under `auto`, the prefix token favoured by `bias`; deltas recorded with the tokens out at the time. */
async function generate(seed: number, bias: number, maxTokens = 96, extras: Partial<NonNullable<GenerateParams['extras']>> = {}) {
  let tokensOut = 0;
  const deltas: Array<{ text: string; tokensOut: number }> = [];
  const request: GenerateRequest = {
    messages: [{ role: 'user', content: 'What is the weather in Oslo?' }],
    params: { maxTokens, temperature: 1, topP: null, seed, stop: null, extras: { tools, tool_choice: 'auto', logit_bias: { [String(prefixToken)]: bias }, ...extras } },
    signal: new AbortController().signal,
    onProgress: (completionTokens) => {
      tokensOut = completionTokens;
    },
    onDelta: (text) => deltas.push({ text, tokensOut }),
  };
  const result = await backend.generate(request);
  return { result, deltas };
}

/** The one call of a result, checked: a callable tool, arguments that parse and validate against its schema. */
function checkedCall(result: GenerateResult) {
  expect(result.finishReason).toBe('tool_calls');
  expect(result.toolCalls).toHaveLength(1);
  const call = result.toolCalls?.[0];
  if (call === undefined) throw new Error('no call');
  const validate = ajv.compile(schemaOf[call.function.name] ?? false);
  expect(validate(JSON.parse(call.function.arguments)), `${call.function.name}: ${call.function.arguments}`).toBe(true);
  return call;
}

describe('tool_choice auto on llama.cpp', () => {
  it('switches to the call grammar where the prefix appears: the text before it is the content, the call is valid; the text streams as it is generated', async () => {
    const runs = [];
    for (let seed = 1; seed <= 6; seed++) runs.push(await generate(seed, 4));
    for (const { result, deltas } of runs) {
      // The streamed text is the content, whether or not a call followed.
      expect(deltas.map((d) => d.text).join('')).toBe(result.content);
      expect(result.content).not.toContain('||call:');
      if (result.toolCalls !== undefined) checkedCall(result);
      else expect(['length', 'stop']).toContain(result.finishReason);
    }
    // Calls that start part way: text first, then the call (several seeds, so no one seed is relied on).
    const mixed = runs.filter(({ result }) => result.toolCalls !== undefined && result.content !== '');
    expect(mixed.length).toBeGreaterThan(0);
    for (const { result, deltas } of mixed) {
      // The first piece of text went out while the answer was still being generated.
      expect(deltas[0]?.tokensOut).toBeLessThan(result.completionTokens);
    }
  });

  it('the same seed gives the same answer (content and call), with logprobs too (of the content\'s tokens)', async () => {
    const a = await generate(3, 4);
    const b = await generate(3, 4);
    expect(b.result).toEqual(a.result);
    // With logprobs (the sampler variant that reports distributions): deterministic too, the same
    // text before the call (sampled alike), a valid call, logprobs of the content's tokens.
    const c = (await generate(3, 4, 96, { logprobs: true })).result;
    expect((await generate(3, 4, 96, { logprobs: true })).result).toEqual(c);
    expect(c.content).toBe(a.result.content);
    if (a.result.toolCalls !== undefined) checkedCall(c);
    expect(c.logprobs?.length).toBeLessThanOrEqual(c.completionTokens);
    expect(c.logprobs?.every((l) => Number.isFinite(l.logprob))).toBe(true);
  });

  it('a call from the first token; max_tokens running out mid-call returns no call: finish_reason length, the text before it', async () => {
    // +100: the prefix is the first token whatever the seed.
    const whole = await generate(1, 100);
    checkedCall(whole.result);
    expect(whole.result.content).toBe('');
    expect(whole.deltas).toEqual([]);
    const cut = await generate(1, 100, 4);
    expect(cut.result.finishReason).toBe('length');
    expect(cut.result.toolCalls).toBeUndefined();
    expect(cut.result.content).toBe('');
    expect(cut.result.completionTokens).toBeGreaterThanOrEqual(4);
  });

  it('parallel_tool_calls false: one call at most; tool_choice none: the prefix is text, no grammar', async () => {
    checkedCall((await generate(2, 100, 96, { parallel_tool_calls: false })).result);
    const none = await generate(2, 100, 8, { tool_choice: 'none' });
    expect(none.result.toolCalls).toBeUndefined();
    expect(none.result.content).toContain('||call:');
  });
});
