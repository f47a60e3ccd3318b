/**
 * node-llama-cpp decodes in a promise nobody awaits: an exception inside its decode loop (its
 * sampler refusing a value) used to be an unhandled rejection that ended the inference worker's
 * process. The backend's fault guard turns it into failed generations instead. Each case runs in
 * its own process (the unhandled rejection is process-wide), on the real tiny GGUF.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'support', 'llama-fault-child.ts');

function run(dir: string, mode: 'llama' | 'other'): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sluice-fault-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('llama.cpp backend: a throw inside the decode loop', () => {
  it('fails the generations in flight (retryable), keeps the process alive, and serves the next requests on fresh sequences', async () => {
    const { code, stdout, stderr } = await run(dir, 'llama');
    expect(code, stderr).toBe(0);
    const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
    expect(result.faults).toBe(1);
    expect(result.during.some((r: { ok: boolean }) => !r.ok)).toBe(true);
    for (const r of result.during.filter((x: { ok: boolean }) => !x.ok)) {
      expect(r).toMatchObject({ kind: 'unavailable', message: expect.stringContaining('llama.cpp generation failed') });
    }
    expect(result.after).toHaveLength(3);
    for (const r of result.after) expect(r).toMatchObject({ ok: true, completionTokens: 8 });
    expect(stderr).toContain('SluiceLlamaFault');
  });

  it('does not swallow an unhandled rejection from elsewhere: the process still dies of it', async () => {
    const { code, stderr } = await run(dir, 'other');
    expect(code).not.toBe(0);
    expect(stderr).toContain('a rejection from elsewhere');
  });
});
