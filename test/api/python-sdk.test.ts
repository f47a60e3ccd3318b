/**
 * The official `openai` Python SDK streams from Sluice unchanged (issue 13): `stream=True` and the
 * `stream()` helper's `get_final_completion()`, equal to the non-streamed completion at
 * temperature 0, usage equal to the ledger row; and its Responses API (issue 14): create, retrieve,
 * `previous_response_id`, `responses.stream()`. The SDK lives in a project-local venv made by
 * `scripts/install-python-sdk.sh` (idempotent; `.ci/run` runs it, and so does this set-up).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startTestStack, type TestStack } from '../support/stack.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let stack: TestStack;
let key: string;

beforeAll(async () => {
  await run('bash', [path.join(ROOT, 'scripts/install-python-sdk.sh')], { cwd: ROOT, timeout: 300_000 });
  stack = await startTestStack();
  ({ key } = await stack.createTenantKey());
}, 400_000);
afterAll(async () => {
  await stack?.stop();
});

describe('the openai Python SDK', () => {
  it('streams chat.completion.chunks equal to the non-streamed completion, usage equal to the ledger row', async () => {
    const { stdout } = await run(path.join(ROOT, '.venv-python/bin/python'), [path.join(ROOT, 'test/support/python-sdk-stream.py')], {
      env: { PATH: process.env.PATH ?? '', SLUICE_KEY: key, SLUICE_BASE_URL: `${stack.url}/v1` },
      timeout: 120_000,
    });
    const out = JSON.parse(stdout) as { plain: string; joined: string; first_role: string; objects: string[]; finish: string[]; usage: Record<string, number> | null; id: string; final: string };
    expect(out.first_role).toBe('assistant');
    expect(out.objects).toEqual(['chat.completion.chunk']);
    expect(out.finish).toHaveLength(1);
    expect(out.joined).toBe(out.plain);
    expect(out.final).toBe(out.plain);
    const rows = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', out.id.replace('chatcmpl-', '')).execute();
    expect(rows).toHaveLength(1);
    expect(out.usage).toMatchObject({ prompt_tokens: rows[0]?.input_tokens, completion_tokens: rows[0]?.output_tokens, total_tokens: (rows[0]?.input_tokens ?? 0) + (rows[0]?.output_tokens ?? 0) });
  });

  it('creates, retrieves, chains and streams responses (Responses events; the final response equals the ledger row)', async () => {
    const { stdout } = await run(path.join(ROOT, '.venv-python/bin/python'), [path.join(ROOT, 'test/support/python-sdk-responses.py')], {
      env: { PATH: process.env.PATH ?? '', SLUICE_KEY: key, SLUICE_BASE_URL: `${stack.url}/v1` },
      timeout: 120_000,
    });
    const out = JSON.parse(stdout) as {
      first: { id: string; object: string; usage: { input_tokens: number } }; retrieved: unknown; first_text: string; chained_previous: string; chained_input_tokens: number;
      types: string[]; joined: string; final_text: string; final_id: string; final_usage: { input_tokens: number; output_tokens: number };
    };
    expect(out.first.object).toBe('response');
    expect(out.retrieved).toEqual(out.first);
    expect(out.first_text.length).toBeGreaterThan(0);
    expect(out.chained_previous).toBe(out.first.id);
    expect(out.chained_input_tokens).toBeGreaterThan(out.first.usage.input_tokens);
    expect(out.types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(['response.completed', 'response.incomplete']).toContain(out.types.at(-1));
    expect(out.joined).toBe(out.final_text);
    const rows = await stack.db.selectFrom('usage').selectAll().where('request_id', '=', out.final_id).execute();
    expect(rows).toHaveLength(1);
    expect(out.final_usage).toMatchObject({ input_tokens: rows[0]?.input_tokens, output_tokens: rows[0]?.output_tokens });
  });
});
