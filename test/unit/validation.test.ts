/** `/v1/chat/completions` body validation: 400s that name the parameter, and the normalised body. */
import { describe, expect, it } from 'vitest';
import { HttpError, fromInvalidRequest } from '../../api/errors.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';
import { checkMaxTokens, checkTokenLimits, estimatePromptTokens, minPromptTokens, validateChatBody } from '../../domain/chat-validation.js';
import type { ChatMessageInput } from '../../contracts/chat.js';

const good = { model: 'tiny', messages: [{ role: 'user', content: 'hello' }] };

function rejection(body: unknown): HttpError {
  try {
    validateChatBody(body);
  } catch (err) {
    // A pure rule refuses with InvalidRequestError; the API answers it as this HttpError.
    expect(err).toBeInstanceOf(InvalidRequestError);
    const http = fromInvalidRequest(err as InvalidRequestError);
    expect(http).toBeInstanceOf(HttpError);
    return http;
  }
  throw new Error(`expected ${JSON.stringify(body)} to be rejected`);
}

describe('validateChatBody: rejections', () => {
  it.each<[string, unknown, string | null]>([
    ['a body that is not an object', [], null],
    ['a null body', null, null],
    ['missing model', { messages: good.messages }, 'model'],
    ['an empty model', { ...good, model: '  ' }, 'model'],
    ['a non-string model', { ...good, model: 42 }, 'model'],
    ['a model over 256 characters', { ...good, model: 'm'.repeat(257) }, 'model'],
    ['missing messages', { model: 'tiny' }, 'messages'],
    ['messages that are not an array', { ...good, messages: { role: 'user', content: 'hi' } }, 'messages'],
    ['messages as a string', { ...good, messages: 'hello' }, 'messages'],
    ['empty messages', { ...good, messages: [] }, 'messages'],
    ['a message that is not an object', { ...good, messages: ['hello'] }, 'messages[0]'],
    ['an unknown role', { ...good, messages: [{ role: 'wizard', content: 'hi' }] }, 'messages[0].role'],
    ['a missing role', { ...good, messages: [{ content: 'hi' }] }, 'messages[0].role'],
    ['an unknown role in the second message', { ...good, messages: [good.messages[0], { role: 'robot', content: 'x' }] }, 'messages[1].role'],
    ['missing content', { ...good, messages: [{ role: 'user' }] }, 'messages[0].content'],
    ['numeric content', { ...good, messages: [{ role: 'user', content: 7 }] }, 'messages[0].content'],
    ['object content', { ...good, messages: [{ role: 'user', content: { text: 'hi' } }] }, 'messages[0].content'],
    [
      'an image content part',
      { ...good, messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image_url', image_url: { url: 'x' } }] }] },
      'messages[0].content',
    ],
    ['a text part without text', { ...good, messages: [{ role: 'user', content: [{ type: 'text' }] }] }, 'messages[0].content'],
    ['a bare string part', { ...good, messages: [{ role: 'user', content: ['hi'] }] }, 'messages[0].content'],
    ['stream as a string', { ...good, stream: 'yes' }, 'stream'],
    ['stream_options without stream', { ...good, stream_options: { include_usage: true } }, 'stream_options'],
    ['stream_options not an object', { ...good, stream: true, stream_options: true }, 'stream_options'],
    ['an unknown stream option', { ...good, stream: true, stream_options: { chunk_size: 3 } }, 'stream_options.chunk_size'],
    ['include_usage as a string', { ...good, stream: true, stream_options: { include_usage: 'yes' } }, 'stream_options.include_usage'],
    ['n: 2', { ...good, n: 2 }, 'n'],
    ['n: 0', { ...good, n: 0 }, 'n'],
    ['tools', { ...good, tools: [] }, 'tools'],
    ['a tool of another type', { ...good, tools: [{ type: 'custom', custom: { name: 'x' } }] }, 'tools[0].type'],
    ['a bad tool name', { ...good, tools: [{ type: 'function', function: { name: 'a b' } }] }, 'tools[0].function.name'],
    ['an unknown tool field', { ...good, tools: [{ type: 'function', function: { name: 'a', examples: [] } }] }, 'tools[0].function.examples'],
    ['a duplicate tool', { ...good, tools: [{ type: 'function', function: { name: 'a' } }, { type: 'function', function: { name: 'a' } }] }, 'tools[1].function.name'],
    ['parameters not an object schema', { ...good, tools: [{ type: 'function', function: { name: 'a', parameters: { type: 'string' } } }] }, 'tools[0].function.parameters.type'],
    ['strict not a boolean', { ...good, tools: [{ type: 'function', function: { name: 'a', strict: 'yes' } }] }, 'tools[0].function.strict'],
    ['too many tools', { ...good, tools: Array.from({ length: 129 }, (_, i) => ({ type: 'function', function: { name: `f${i}` } })) }, 'tools'],
    ['tool_choice without tools', { ...good, tool_choice: 'auto' }, 'tool_choice'],
    ['parallel_tool_calls without tools', { ...good, parallel_tool_calls: false }, 'parallel_tool_calls'],
    ['tool_choice naming no tool', { ...good, tools: [{ type: 'function', function: { name: 'a' } }], tool_choice: { type: 'function', function: { name: 'b' } } }, 'tool_choice.function.name'],
    ['tool_choice unknown', { ...good, tools: [{ type: 'function', function: { name: 'a' } }], tool_choice: 'any' }, 'tool_choice'],
    ['tool_choice allowed_tools', { ...good, tools: [{ type: 'function', function: { name: 'a' } }], tool_choice: { type: 'allowed_tools', allowed_tools: {} } }, 'tool_choice.type'],
    ['parallel_tool_calls not a boolean', { ...good, tools: [{ type: 'function', function: { name: 'a' } }], parallel_tool_calls: 'no' }, 'parallel_tool_calls'],
    ['an unknown message field', { ...good, messages: [{ role: 'user', content: 'x', cache: true }] }, 'messages[0].cache'],
    ['a message name', { ...good, messages: [{ role: 'user', content: 'x', name: 'bob' }] }, 'messages[0].name'],
    ['tool_calls on a user message', { ...good, messages: [{ role: 'user', content: 'x', tool_calls: [] }] }, 'messages[0].tool_calls'],
    ['a refusal', { ...good, messages: [{ role: 'assistant', content: 'x', refusal: 'no' }] }, 'messages[0].refusal'],
    ['a text part with extra fields', { ...good, messages: [{ role: 'user', content: [{ type: 'text', text: 'x', cache_control: {} }] }] }, 'messages[0].content[0].cache_control'],
    ['a tool message without tool_call_id', { ...good, messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
    ['a tool message answering no earlier call', {
      ...good,
      messages: [{ role: 'user', content: 'x' }, { role: 'tool', content: 'r', tool_call_id: 'call_9' }, { role: 'assistant', content: null, tool_calls: [{ id: 'call_9', type: 'function', function: { name: 'f', arguments: '{}' } }] }],
    }, 'messages[1].tool_call_id'],
    ['a call answered twice', {
      ...good,
      messages: [
        { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', content: 'r', tool_call_id: 'c' }, { role: 'tool', content: 'again', tool_call_id: 'c' },
      ],
    }, 'messages[2].tool_call_id'],
    ['a call without arguments', { ...good, messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f' } }] }] }, 'messages[0].tool_calls[0].function.arguments'],
    ['a call id used twice', {
      ...good,
      messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }, { id: 'c', type: 'function', function: { name: 'g', arguments: '{}' } }] }],
    }, 'messages[0].tool_calls[1].id'],
    ['an assistant message with neither content nor calls', { ...good, messages: [{ role: 'assistant', content: null }] }, 'messages[0].content'],
    ['max_tokens 0', { ...good, max_tokens: 0 }, 'max_tokens'],
    ['max_tokens -1', { ...good, max_tokens: -1 }, 'max_tokens'],
    ['max_tokens 1.5', { ...good, max_tokens: 1.5 }, 'max_tokens'],
    ['max_tokens as a string', { ...good, max_tokens: '10' }, 'max_tokens'],
    ['max_completion_tokens 0', { ...good, max_completion_tokens: 0 }, 'max_completion_tokens'],
    ['temperature 3', { ...good, temperature: 3 }, 'temperature'],
    ['temperature -0.1', { ...good, temperature: -0.1 }, 'temperature'],
    ['temperature NaN-like string', { ...good, temperature: 'hot' }, 'temperature'],
    ['top_p 1.5', { ...good, top_p: 1.5 }, 'top_p'],
    ['a fractional seed', { ...good, seed: 1.5 }, 'seed'],
    ['a seed beyond int32', { ...good, seed: 2 ** 31 }, 'seed'],
    ['stop with 5 entries', { ...good, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    ['stop with an empty string', { ...good, stop: ['a', ''] }, 'stop'],
    ['stop with a number', { ...good, stop: ['a', 1] }, 'stop'],
    ['stop as a number', { ...good, stop: 5 }, 'stop'],
    ['user as a number', { ...good, user: 123 }, 'user'],
    ['user as an object', { ...good, user: { id: 'u' } }, 'user'],
  ])('rejects %s with 400 naming the parameter', (_name, body, param) => {
    const err = rejection(body);
    expect(err.status).toBe(400);
    expect(err.type).toBe('invalid_request_error');
    expect(err.param).toBe(param);
    expect(err.message.length).toBeGreaterThan(0);
  });
});

describe('validateChatBody: accepted bodies', () => {
  it('accepts string content and fills absent parameters with null', () => {
    const v = validateChatBody({
      model: 'tiny',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello' },
      ],
    });
    expect(v).toEqual({
      model: 'tiny',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello' },
      ],
      params: { maxTokens: null, temperature: null, topP: null, seed: null, stop: null },
      user: null,
      metadata: null,
      stream: false,
      includeUsage: false,
    });
  });

  it('keeps metadata pairs (experiment targeting); `{}` is none; a bad one names the field', () => {
    const base = { model: 'tiny', messages: [{ role: 'user', content: 'hi' }] };
    expect(validateChatBody({ ...base, metadata: { plan: 'pro' } }).metadata).toEqual({ plan: 'pro' });
    expect(validateChatBody({ ...base, metadata: {} }).metadata).toBeNull();
    expect(() => validateChatBody({ ...base, metadata: { plan: 1 } })).toThrow(expect.objectContaining({ param: 'metadata.plan' }));
    expect(() => validateChatBody({ ...base, metadata: 'x' })).toThrow(expect.objectContaining({ param: 'metadata' }));
  });

  it('accepts every OpenAI role', () => {
    const roles = ['system', 'developer', 'user', 'assistant', 'tool'] as const;
    const call = { id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } };
    const v = validateChatBody({
      model: 'tiny',
      messages: roles.map((role) => (role === 'assistant' ? { role, content: role, tool_calls: [call] } : role === 'tool' ? { role, content: role, tool_call_id: 'call_1' } : { role, content: role })),
    });
    expect(v.messages.map((m) => m.role)).toEqual([...roles]);
  });

  it('joins text parts into one string', () => {
    const v = validateChatBody({
      ...good,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello, ' }, { type: 'text', text: 'world' }] }],
    });
    expect(v.messages).toEqual([{ role: 'user', content: 'Hello, world' }]);
  });

  it('takes max_completion_tokens as maxTokens, and max_tokens when it is absent', () => {
    expect(validateChatBody({ ...good, max_completion_tokens: 33 }).params.maxTokens).toBe(33);
    expect(validateChatBody({ ...good, max_tokens: 17 }).params.maxTokens).toBe(17);
    expect(validateChatBody({ ...good, max_completion_tokens: 33, max_tokens: 17 }).params.maxTokens).toBe(33);
  });

  it('passes sampling parameters through', () => {
    const v = validateChatBody({ ...good, max_tokens: 10, temperature: 0, top_p: 1, seed: -5, stop: ['\n\n', 'END'], user: 'user-42' });
    expect(v.params).toEqual({ maxTokens: 10, temperature: 0, topP: 1, seed: -5, stop: ['\n\n', 'END'] });
    expect(v.user).toBe('user-42');
  });

  it('accepts the bounds of temperature and stop', () => {
    expect(validateChatBody({ ...good, temperature: 2 }).params.temperature).toBe(2);
    expect(validateChatBody({ ...good, stop: ['a', 'b', 'c', 'd'] }).params.stop).toEqual(['a', 'b', 'c', 'd']);
  });

  it('turns a single stop string into a one-element list', () => {
    expect(validateChatBody({ ...good, stop: 'END' }).params.stop).toEqual(['END']);
  });

  it('accepts stream: false, n: 1 and null optional fields', () => {
    const v = validateChatBody({ ...good, stream: false, n: 1, max_tokens: null, temperature: null, stop: null, user: null, tools: null });
    expect(v.params).toEqual({ maxTokens: null, temperature: null, topP: null, seed: null, stop: null });
    expect(v.user).toBeNull();
  });

  it('accepts stream: true with and without include_usage', () => {
    expect(validateChatBody({ ...good, stream: true })).toMatchObject({ stream: true, includeUsage: false });
    expect(validateChatBody({ ...good, stream: true, stream_options: { include_usage: true } })).toMatchObject({ stream: true, includeUsage: true });
    expect(validateChatBody({ ...good, stream: true, stream_options: null })).toMatchObject({ stream: true, includeUsage: false });
  });

  it('treats an empty user as no user', () => {
    expect(validateChatBody({ ...good, user: '' }).user).toBeNull();
  });
});

describe('prompt token estimates', () => {
  const cases: ChatMessageInput[][] = [
    [{ role: 'user', content: '' }],
    [{ role: 'user', content: 'hi' }],
    [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Résumé of naïve café — 日本語 🚀'.repeat(20) },
    ],
    Array.from({ length: 50 }, (_, i): ChatMessageInput => ({ role: i % 2 ? 'assistant' : 'user', content: `turn ${i} `.repeat(i) })),
  ];

  it.each(cases.map((c, i) => [i, c] as const))('estimate ≥ lower bound ≥ 1 (case %i)', (_i, messages) => {
    const estimate = estimatePromptTokens(messages);
    const min = minPromptTokens(messages);
    expect(Number.isInteger(estimate)).toBe(true);
    expect(Number.isInteger(min)).toBe(true);
    expect(min).toBeGreaterThanOrEqual(1);
    expect(estimate).toBeGreaterThanOrEqual(min);
  });

  it('counts bytes, not UTF-16 units, so multi-byte text is never underestimated', () => {
    const ascii = estimatePromptTokens([{ role: 'user', content: 'aaaa' }]);
    const emoji = estimatePromptTokens([{ role: 'user', content: '🚀🚀' }]); // 4 UTF-16 units, 8 bytes
    expect(emoji - ascii).toBe(4);
  });

  it('grows with the prompt', () => {
    const short = [{ role: 'user', content: 'x'.repeat(100) }] as ChatMessageInput[];
    const long = [{ role: 'user', content: 'x'.repeat(10_000) }] as ChatMessageInput[];
    expect(estimatePromptTokens(long)).toBeGreaterThan(estimatePromptTokens(short));
    expect(minPromptTokens(long)).toBeGreaterThan(minPromptTokens(short));
    // One token never covers more than 16 bytes.
    expect(minPromptTokens(long)).toBeGreaterThanOrEqual(10_000 / 16);
  });
});

describe('checkTokenLimits (the chat route and batch validation)', () => {
  const model = { max_output_tokens: 100, context_length: 200 };
  const messages: ChatMessageInput[] = [{ role: 'user', content: 'x'.repeat(16 * 150 - 8) }]; // lower bound 150 tokens

  function refusal(maxTokens: number | null, assumed: number): InvalidRequestError {
    try {
      checkTokenLimits(model, messages, maxTokens, assumed);
    } catch (err) {
      if (err instanceof InvalidRequestError) return err;
      throw err;
    }
    throw new Error('expected a refusal');
  }

  it('returns the completion it checked: max_tokens, else the assumed size', () => {
    expect(checkTokenLimits(model, messages, 50, 1)).toBe(50);
    expect(checkTokenLimits(model, messages, null, 1)).toBe(1);
    expect(checkTokenLimits(model, messages, null, 50)).toBe(50);
  });

  it('refuses max_tokens over the model output limit, naming max_tokens', () => {
    expect(refusal(101, 1)).toMatchObject({ param: 'max_tokens', code: 'invalid_value' });
  });

  it('checks an experiment override alone, naming its path', () => {
    expect(() => checkMaxTokens(model, 100, 'variants[1].overrides.max_tokens')).not.toThrow();
    expect(() => checkMaxTokens(model, null)).not.toThrow();
    expect(() => checkMaxTokens(model, 101, 'variants[1].overrides.max_tokens')).toThrow(
      new InvalidRequestError('max_tokens is too large: 101. This model supports at most 100 completion tokens.', 'variants[1].overrides.max_tokens', 'invalid_value'),
    );
  });

  it('refuses a prompt whose lower bound plus the completion exceeds the context, naming messages', () => {
    expect(refusal(51, 1)).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
    expect(refusal(null, 100)).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
  });
});
