/** `/v1/completions` body validation: the closed field list (checked against the SDK's request type), refusals naming the field. */
import { describe, expect, it } from 'vitest';
import type { CompletionCreateParamsBase } from 'openai/resources/completions';
import { MAX_COMPLETION_PROMPTS } from '../../contracts/completions.js';
import { COMPLETION_FIELDS, DEFAULT_COMPLETION_MAX_TOKENS, toTextCompletion, validateCompletionBody, type CompletionFieldName } from '../../domain/completion-validation.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';

type Missing = Exclude<keyof CompletionCreateParamsBase, CompletionFieldName>;
type Extra = Exclude<CompletionFieldName, keyof CompletionCreateParamsBase>;
const noneMissing: [Missing] extends [never] ? true : Missing = true;
const noneExtra: [Extra] extends [never] ? true : Extra = true;

const base = { model: 'tiny', prompt: 'Once upon a time' };

function refusal(body: unknown): InvalidRequestError {
  try {
    validateCompletionBody(body);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidRequestError);
    return err as InvalidRequestError;
  }
  throw new Error(`expected ${JSON.stringify(body)} to be refused`);
}

describe('validateCompletionBody', () => {
  it('lists every field of the SDK request type', () => {
    expect(noneMissing && noneExtra).toBe(true);
    expect(Object.keys(COMPLETION_FIELDS).length).toBeGreaterThan(10);
  });

  it.each<[string, Record<string, unknown>, string, string]>([
    ['an unknown field', { ...base, top_k: 3 }, 'top_k', 'unrecognized_request_argument'],
    ['a suffix', { ...base, suffix: ' the end' }, 'suffix', 'unsupported_parameter'],
    [`more than ${MAX_COMPLETION_PROMPTS} prompts`, { ...base, prompt: Array.from({ length: MAX_COMPLETION_PROMPTS + 1 }, (_, i) => `p${i}`) }, 'prompt', 'invalid_value'],
    ['an empty prompt array', { ...base, prompt: [] }, 'prompt', 'invalid_value'],
    ['an empty prompt among several', { ...base, prompt: ['a', ''] }, 'prompt', 'invalid_value'],
    ['an array of token arrays', { ...base, prompt: [[1, 2], [3]] }, 'prompt', 'unsupported_parameter'],
    ['a mixed array', { ...base, prompt: ['a', 2] }, 'prompt', 'invalid_type'],
    ['a token array', { ...base, prompt: [1, 2, 3] }, 'prompt', 'unsupported_parameter'],
    ['an empty prompt', { ...base, prompt: '' }, 'prompt', 'invalid_value'],
    ['no prompt', { model: 'tiny' }, 'prompt', 'missing_required_parameter'],
    ['n: 2', { ...base, n: 2 }, 'n', 'unsupported_parameter'],
    ['best_of: 3', { ...base, best_of: 3 }, 'best_of', 'unsupported_parameter'],
    ['logprobs', { ...base, logprobs: 2 }, 'logprobs', 'unsupported_parameter'],
    ['stream: true', { ...base, stream: true }, 'stream', 'unsupported_parameter'],
    ['a string echo', { ...base, echo: 'yes' }, 'echo', 'invalid_type'],
    ['max_tokens 0', { ...base, max_tokens: 0 }, 'max_tokens', 'invalid_value'],
    ['a bad penalty', { ...base, presence_penalty: 9 }, 'presence_penalty', 'invalid_value'],
  ])('refuses %s, naming it', (_name, body, param, code) => {
    const err = refusal(body);
    expect(err.param).toBe(param);
    expect(err.code).toBe(code);
  });

  it('takes a string or an array of one string, defaults max_tokens to 16, and carries the prompt as one raw user message', () => {
    const v = validateCompletionBody({ ...base, prompt: ['Hello'], stop: 'x', echo: true, seed: 3, frequency_penalty: 1, suffix: null, n: 1, best_of: 1 });
    expect(v).toMatchObject({ prompts: ['Hello'], echo: true, messages: [{ role: 'user', content: 'Hello' }] });
    expect(v.params).toEqual({ maxTokens: DEFAULT_COMPLETION_MAX_TOKENS, temperature: null, topP: null, seed: 3, stop: ['x'], extras: { frequency_penalty: 1 }, rawPrompt: true });
  });

  it(`takes 2 to ${MAX_COMPLETION_PROMPTS} prompts, in order, the first as the pipeline's message`, () => {
    const prompts = Array.from({ length: MAX_COMPLETION_PROMPTS }, (_, i) => `prompt ${i}`);
    const v = validateCompletionBody({ ...base, prompt: prompts });
    expect(v.prompts).toEqual(prompts);
    expect(v.messages).toEqual([{ role: 'user', content: 'prompt 0' }]);
  });

  it.each<[string, unknown, string, RegExp]>([
    ['a mixed array', ['a', 3], 'invalid_type', /^'prompt\[1\]' must be a string, not a number: each element of an array 'prompt' is one prompt's text \(token arrays are not accepted/],
    ['a string then an object', ['a', { text: 'b' }], 'invalid_type', /^'prompt\[1\]' must be a string, not an object/],
    ['an array of numbers', [1, 2, 3], 'unsupported_parameter', /^'prompt' is a token array \(token IDs\): token arrays are not accepted, send each prompt as text$/],
    ['an array of arrays', [[1, 2], [3]], 'unsupported_parameter', /^'prompt' is an array of token arrays: token arrays are not accepted/],
    ['a nested empty array', [[]], 'invalid_type', /^'prompt\[0\]' must be a string, not an empty array/],
    ['an array of numbers that are not token IDs', [1.5, -2], 'invalid_type', /^'prompt\[0\]' must be a string, not a number/],
    ['a token array beside a string', ['a', [1, 2]], 'invalid_type', /^'prompt\[1\]' must be a string, not an array/],
  ])('refuses %s in prompt, saying what is wrong with it', (_name, prompt, code, message) => {
    const err = refusal({ ...base, prompt });
    expect([err.param, err.code]).toEqual(['prompt', code]);
    expect(err.message).toMatch(message);
  });

  it('names the bound in the too-many-prompts error', () => {
    const err = refusal({ ...base, prompt: Array.from({ length: MAX_COMPLETION_PROMPTS + 1 }, () => 'x') });
    expect(err.message).toContain(`at most ${MAX_COMPLETION_PROMPTS}`);
  });

  it('builds one choice per prompt, each echoing its own prompt when asked', () => {
    const choice = (index: number, content: string) => ({ index, message: { role: 'assistant' as const, content, refusal: null }, logprobs: null, finish_reason: 'stop' as const });
    const chat = {
      id: 'chatcmpl-cmpl_2', object: 'chat.completion' as const, created: 1, model: 'm', system_fingerprint: null,
      choices: [choice(0, ' one'), choice(1, ' two')], usage: { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 },
    };
    expect(toTextCompletion(chat, ['A', 'B']).choices.map((c) => [c.index, c.text])).toEqual([[0, 'A one'], [1, 'B two']]);
    expect(toTextCompletion(chat, null).choices.map((c) => c.text)).toEqual([' one', ' two']);
  });

  it('builds a text_completion, echoing the prompt when asked', () => {
    const chat = {
      id: 'chatcmpl-cmpl_1', object: 'chat.completion' as const, created: 1, model: 'm', system_fingerprint: null,
      choices: [{ index: 0, message: { role: 'assistant' as const, content: ' there', refusal: null }, logprobs: null, finish_reason: 'length' as const }],
      usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 },
    };
    expect(toTextCompletion(chat, ['Hi'])).toEqual({
      id: 'cmpl-cmpl_1', object: 'text_completion', created: 1, model: 'm', system_fingerprint: null,
      choices: [{ text: 'Hi there', index: 0, logprobs: null, finish_reason: 'length' }], usage: chat.usage,
    });
    expect(toTextCompletion(chat, null).choices[0]?.text).toBe(' there');
  });
});
