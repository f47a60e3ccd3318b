/** `sluice chat`: one synchronous chat completion. */
import { intOpt, requiredStr, UsageError, type CommandSpec } from './args.js';
import type { Handlers } from './http.js';

export interface ChatBody {
  model: string;
  messages: Array<{ role: 'user'; content: string }>;
  max_tokens?: number;
}

export type ChatAction = { kind: 'chat'; body: ChatBody };

export const chatCommands: readonly CommandSpec<ChatAction>[] = [
  {
    path: ['chat'],
    synopsis: '--model M [--max-tokens N] PROMPT...',
    summary: 'one synchronous chat completion: the answer on stdout, usage on stderr',
    options: {
      model: { type: 'string', arg: 'M', help: 'model ID (required)' },
      'max-tokens': { type: 'string', arg: 'N', help: 'max completion tokens' },
    },
    args: ['PROMPT'],
    variadic: true,
    build(v, words) {
      const prompt = words.join(' ');
      if (prompt.trim() === '') throw new UsageError('the prompt is empty');
      const body: ChatBody = { model: requiredStr(v, 'model'), messages: [{ role: 'user', content: prompt }] };
      const maxTokens = intOpt(v, 'max-tokens', 1);
      if (maxTokens !== undefined) body.max_tokens = maxTokens;
      return { kind: 'chat', body };
    },
  },
];

interface ChatCompletionJson {
  id: string;
  model: string;
  choices: Array<{ message: { content: string | null }; finish_reason: string | null }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

export const chatHandlers: Handlers<ChatAction> = {
  chat: {
    request: (a) => ({ method: 'POST', path: '/v1/chat/completions', body: a.body }),
    render(body, _a, { out, err }) {
      const c = body as ChatCompletionJson;
      const choice = c.choices[0];
      out(choice?.message.content ?? '');
      const u = c.usage;
      const tokens = u ? `${u.prompt_tokens} prompt + ${u.completion_tokens} completion = ${u.total_tokens} tokens` : 'no usage reported';
      err(`[${c.model} · ${c.id} · ${tokens} · finish ${choice?.finish_reason ?? '?'}]`);
    },
  },
};
