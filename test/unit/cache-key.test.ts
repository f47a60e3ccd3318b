/** The response cache's key and eligibility rules (domain/cache-key.ts, domain/cache-eligibility.ts). */
import { describe, expect, it } from 'vitest';
import { cacheKey, type CacheKeyInput } from '../../domain/cache-key.js';
import { cacheDirectiveOf, CacheHeaderError, consultsCache, isDeterministic } from '../../domain/cache-eligibility.js';

const base: CacheKeyInput = {
  tenantId: 'ten_a',
  model: 'm',
  variant: null,
  messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }],
  params: {
    maxTokens: 16, temperature: 0, topP: null, seed: null, stop: null,
    extras: { response_format: { type: 'json_object' }, logit_bias: { '12': 5 }, presence_penalty: 0.5 },
  },
};

describe('cacheKey', () => {
  it('is a SHA-256 hex digest, the same for the same input', () => {
    expect(cacheKey(base)).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey(structuredClone(base))).toBe(cacheKey(base));
  });

  const changes: Array<[string, CacheKeyInput]> = [
    ['tenant', { ...base, tenantId: 'ten_b' }],
    ['model', { ...base, model: 'other' }],
    ['variant', { ...base, variant: 'v1' }],
    ['a message content', { ...base, messages: [base.messages[0]!, { role: 'user', content: 'hi!' }] }],
    ['a message role', { ...base, messages: [{ role: 'developer', content: 'be brief' }, base.messages[1]!] }],
    ['message order', { ...base, messages: [...base.messages].reverse() }],
    ['max_tokens', { ...base, params: { ...base.params, maxTokens: 17 } }],
    ['temperature', { ...base, params: { ...base.params, temperature: 0.5 } }],
    ['top_p', { ...base, params: { ...base.params, topP: 0.9 } }],
    ['seed', { ...base, params: { ...base.params, seed: 1 } }],
    ['stop', { ...base, params: { ...base.params, stop: ['\n'] } }],
    ['response_format', { ...base, params: { ...base.params, extras: { ...base.params.extras, response_format: { type: 'json_schema', json_schema: { name: 'x' } } } } }],
    ['logit_bias', { ...base, params: { ...base.params, extras: { ...base.params.extras, logit_bias: { '12': 6 } } } }],
    ['presence_penalty', { ...base, params: { ...base.params, extras: { ...base.params.extras, presence_penalty: 0.6 } } }],
    ['logprobs asked for', { ...base, params: { ...base.params, extras: { ...base.params.extras, logprobs: true } } }],
    ['no extras', { ...base, params: { ...base.params, extras: {} } }],
    ['raw prompt', { ...base, params: { ...base.params, rawPrompt: true } }],
  ];
  it.each(changes)('changes with %s', (_what, changed) => {
    expect(cacheKey(changed)).not.toBe(cacheKey(base));
  });

  it('does not depend on the order of object keys, at any depth', () => {
    const reordered: CacheKeyInput = {
      params: {
        extras: { presence_penalty: 0.5, logit_bias: { '12': 5 }, response_format: { type: 'json_object' } },
        stop: null, seed: null, topP: null, temperature: 0, maxTokens: 16,
      },
      messages: base.messages.map((m) => ({ content: m.content, role: m.role })),
      variant: null,
      model: 'm',
      tenantId: 'ten_a',
    };
    expect(cacheKey(reordered)).toBe(cacheKey(base));
  });
});

describe('eligibility', () => {
  it('takes greedy sampling or an explicit seed as deterministic, nothing else', () => {
    expect(isDeterministic({ temperature: 0, seed: null })).toBe(true);
    expect(isDeterministic({ temperature: 0.7, seed: 3 })).toBe(true);
    expect(isDeterministic({ temperature: 0.7, seed: null })).toBe(false);
    expect(isDeterministic({ temperature: 1, seed: null })).toBe(false);
  });

  it('consults the cache unless the request says no-store or is not deterministic', () => {
    expect(consultsCache({ temperature: 0, seed: null }, undefined)).toBe(true);
    expect(consultsCache({ temperature: 0, seed: null }, 'no-cache')).toBe(true);
    expect(consultsCache({ temperature: 0, seed: null }, 'force')).toBe(true);
    expect(consultsCache({ temperature: 0, seed: null }, 'no-store')).toBe(false);
    expect(consultsCache({ temperature: 0.2, seed: null }, 'force')).toBe(false);
  });

  it('reads Cache-Control and X-Sluice-Cache: no-store over no-cache over force; other directives ignored; a bad X-Sluice-Cache refused', () => {
    expect(cacheDirectiveOf(undefined, undefined)).toBeNull();
    expect(cacheDirectiveOf('max-age=0', undefined)).toBeNull();
    expect(cacheDirectiveOf('No-Cache', undefined)).toBe('no-cache');
    expect(cacheDirectiveOf('no-cache, no-store', 'force')).toBe('no-store');
    expect(cacheDirectiveOf('no-cache', 'force')).toBe('no-cache');
    expect(cacheDirectiveOf(undefined, 'FORCE')).toBe('force');
    expect(cacheDirectiveOf(undefined, 'auto')).toBeNull();
    expect(() => cacheDirectiveOf(undefined, 'yes')).toThrow(CacheHeaderError);
  });
});
