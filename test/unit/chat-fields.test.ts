/**
 * The field table (domain/chat-fields.ts) walked field by field: every field of OpenAI's chat
 * completions reference is in it (checked against the installed `openai` SDK's request type at
 * compile time), every field refused everywhere is a 400 naming it, neutral values pass, and each
 * backend's column is what the boundary check applies.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ChatCompletionCreateParamsBase } from 'openai/resources/chat/completions';
import { CHAT_FIELDS, refusedOn, type ChatFieldName } from '../../domain/chat-fields.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';
import { validateChatBody } from '../../domain/chat-validation.js';
import { checkGenerateInput } from '../../domain/sampling-params.js';
import { REQUESTED } from '../support/chat-field-samples.js';

// Compile-time: the table holds exactly the SDK's request fields (a new SDK field fails `tsc`).
type Missing = Exclude<keyof ChatCompletionCreateParamsBase, ChatFieldName>;
type Extra = Exclude<ChatFieldName, keyof ChatCompletionCreateParamsBase>;
const noneMissing: [Missing] extends [never] ? true : Missing = true;
const noneExtra: [Extra] extends [never] ? true : Extra = true;

const base = { model: 'tiny', messages: [{ role: 'user', content: 'hi' }] };


function refusal(body: unknown): InvalidRequestError {
  try {
    validateChatBody(body);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError);
    return err as InvalidRequestError;
  }
  throw new Error(`expected ${JSON.stringify(body)} to be refused`);
}

describe('the chat field table', () => {
  it('names every field of the SDK request type, and nothing else', () => {
    expect(noneMissing).toBe(true);
    expect(noneExtra).toBe(true);
    expect(Object.keys(REQUESTED).sort()).toEqual(Object.keys(CHAT_FIELDS).sort());
  });

  for (const [name, field] of Object.entries(CHAT_FIELDS) as [ChatFieldName, (typeof CHAT_FIELDS)[ChatFieldName]][]) {
    // top_logprobs is only asked for with logprobs, stream_options with stream, tool_choice and parallel_tool_calls with tools.
    const body = {
      ...base, ...(name === 'top_logprobs' ? { logprobs: true } : {}), ...(name === 'stream_options' ? { stream: true } : {}),
      ...(name === 'tool_choice' || name === 'parallel_tool_calls' ? { tools: REQUESTED.tools } : {}), [name]: REQUESTED[name],
    };
    if (field['llama-cpp'] === 'refused' && field['openai-compatible'] === 'refused') {
      it(`${name}: refused on every backend, 400 naming it`, () => {
        const err = refusal(body);
        expect(err.param).toBe(name);
        expect(err.code).toBe('unsupported_parameter');
      });
    } else {
      it(`${name}: accepted where the body enters; the boundary applies each backend's column`, () => {
        const v = validateChatBody(body);
        const carried = Object.keys(v.params.extras ?? {});
        for (const backend of ['llama-cpp', 'openai-compatible'] as const) {
          if (field[backend] === 'refused') {
            // What a backend refuses travels to it as an extra, where its column refuses it.
            expect(carried).toContain(name);
            expect(refusedOn(backend, v.params.extras)?.param).toBe(name);
          } else {
            expect(refusedOn(backend, v.params.extras)).toBeNull();
          }
        }
      });
    }
    it(`${name}: null is "not given"`, () => {
      if (name === 'messages' || name === 'model') return;
      expect(() => validateChatBody({ ...base, [name]: null })).not.toThrow();
    });
  }

  it.each<[string, unknown]>([
    ['n', 1], ['stream', false], ['logprobs', false], ['store', false], ['metadata', {}], ['service_tier', 'auto'],
    ['service_tier', 'default'], ['modalities', ['text']], ['response_format', { type: 'text' }], ['presence_penalty', 0],
    ['frequency_penalty', 0], ['logit_bias', {}], ['tool_choice', 'none'], ['function_call', 'none'],
  ])('accepts the neutral %s: %j', (name, value) => {
    const v = validateChatBody({ ...base, [name]: value });
    expect(v.params.extras).toBeUndefined();
  });

  it('refuses an unknown field as OpenAI does: unrecognized_request_argument naming it', () => {
    const err = refusal({ ...base, top_k: 40 });
    expect(err.param).toBe('top_k');
    expect(err.code).toBe('unrecognized_request_argument');
    expect(err.message).toContain('Unrecognized request argument supplied: top_k');
    expect(refusal({ ...base, __proto__x: 1 }).param).toBe('__proto__x');
  });

  it('top_logprobs needs logprobs: true', () => {
    expect(refusal({ ...base, top_logprobs: 2 }).param).toBe('top_logprobs');
    expect(refusal({ ...base, logprobs: false, top_logprobs: 2 }).param).toBe('top_logprobs');
    expect(validateChatBody({ ...base, logprobs: true, top_logprobs: 0 }).params.extras).toEqual({ logprobs: true, top_logprobs: 0 });
  });

  it('takes safety_identifier as the subject when user is absent', () => {
    expect(validateChatBody({ ...base, safety_identifier: 's-1' }).user).toBe('s-1');
    expect(validateChatBody({ ...base, safety_identifier: 's-1', user: 'u-1' }).user).toBe('u-1');
    expect(refusal({ ...base, safety_identifier: 5 }).param).toBe('safety_identifier');
  });

  it.each<[string, unknown]>([
    ['presence_penalty', 2.5], ['frequency_penalty', '1'], ['logit_bias', { abc: 1 }], ['logit_bias', { '1': 101 }], ['logit_bias', []],
    ['logit_bias', Object.fromEntries(Array.from({ length: 301 }, (_, i) => [String(i), 1]))],
    ['top_logprobs', 21], ['top_logprobs', 1.5], ['logprobs', 'yes'],
    ['reasoning_effort', 'extreme'], ['reasoning_effort', 3], ['verbosity', 'loud'], ['prompt_cache_key', ''], ['prompt_cache_key', 'k'.repeat(257)],
  ])('refuses a bad %s value naming it', (name, value) => {
    expect(refusal({ ...base, [name]: value }).param).toBe(name);
  });

  it('the backend boundary re-checks extras from a history', () => {
    const params = { maxTokens: 4, temperature: 0, topP: null, seed: null, stop: null };
    const messages = [{ role: 'user', content: 'hi' }];
    expect(checkGenerateInput({ messages, params: { ...params, extras: { verbosity: 'low' } } })).toBeNull();
    expect(checkGenerateInput({ messages, params: { ...params, extras: { verbosity: 'loud' } } })?.param).toBe('verbosity');
    expect(checkGenerateInput({ messages, params: { ...params, extras: { model: 'other' } } })?.param).toBe('model');
    expect(checkGenerateInput({ messages, params: { ...params, extras: 'x' } })?.param).toBe('extras');
  });

  it('the README table is this table', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const rows = Object.entries(CHAT_FIELDS).map(([n, f]) => `| \`${n}\` | ${f['llama-cpp']} | ${f['openai-compatible']} | ${f.note} |`);
    for (const row of rows) expect(readme).toContain(row);
  });
});
