/** An upstream's logprobs and passed-on fields, through the openai-compatible backend with a scripted `fetch`: rebuilt field by field, bounded. */
import { describe, expect, it } from 'vitest';
import { createOpenAICompatibleBackend } from '../../activities/backends/openai-compatible.js';

function backendAnswering(choice: Record<string, unknown>, sent: unknown[]) {
  const fetchImpl = (async (_url: unknown, init?: { body?: unknown }) => {
    sent.push(JSON.parse(String(init?.body)));
    return new Response(JSON.stringify({
      id: 'x', object: 'chat.completion', created: 1, model: 'm',
      choices: [{ index: 0, message: { role: 'assistant', content: 'a b' }, finish_reason: 'stop', ...choice }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    }), { status: 200, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return createOpenAICompatibleBackend({ baseURL: 'http://upstream.test/v1', apiKey: null, model: 'm', fetch: fetchImpl });
}

const request = (extras: Record<string, unknown>) => ({
  messages: [{ role: 'user' as const, content: 'hi' }],
  params: { maxTokens: 2, temperature: 0, topP: null, seed: null, stop: null, extras },
  signal: new AbortController().signal,
});

describe('openai-compatible: logprobs from the upstream', () => {
  it('keeps well-formed entries, drops junk and extra fields, and never returns more entries than billed tokens', async () => {
    const sent: unknown[] = [];
    const good = { token: 'a', logprob: -0.5, bytes: [97], top_logprobs: [{ token: 'a', logprob: -0.5, bytes: [97], extra: 'x' }, { token: 'b', logprob: -1 }] };
    const backend = backendAnswering({ logprobs: { content: [good, { token: 5, logprob: 'x' }, { ...good, logprob: -2, bytes: [999] }, good] } }, sent);
    const result = await backend.generate(request({ logprobs: true, top_logprobs: 2 }));
    expect(sent[0]).toMatchObject({ logprobs: true, top_logprobs: 2 });
    expect(result.logprobs).toEqual([
      { token: 'a', logprob: -0.5, bytes: [97], top_logprobs: [{ token: 'a', logprob: -0.5, bytes: [97] }, { token: 'b', logprob: -1, bytes: null }] },
    ]);
  });

  it('returns no logprobs when the upstream sent none', async () => {
    const backend = backendAnswering({ logprobs: null }, []);
    expect((await backend.generate(request({}))).logprobs).toBeUndefined();
  });
});
