/**
 * Run as its own process by test/inference/llama-fault.test.ts (an unhandled rejection would end
 * the test runner's process too): loads the tiny GGUF, makes node-llama-cpp's sampler throw once
 * inside its decode loop (as a non-number temperature did), and prints what the generations did
 * as one JSON line. Mode `other` then leaves a rejection from elsewhere unhandled: the guard must
 * not swallow it (the process must die as Node's default says).
 * Usage: node --import tsx test/support/llama-fault-child.ts <dir> [llama|other]
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLlamaCppBackend } from '../../activities/backends/llama-cpp.js';
import { faultGuard } from '../../activities/backends/llama-cpp/fault-guard.js';
import { BackendError, InterruptedGeneration, type GenerateParams } from '../../activities/backends/types.js';
import { ensureTinyGguf } from '../../workers/llama/tiny-gguf.js';

const [dir = '.', mode = 'llama'] = process.argv.slice(2);
// node-llama-cpp's internal sampler class: the module its context uses (same file, same instance).
const entry = createRequire(import.meta.url).resolve('node-llama-cpp');
const samplerFile = path.join(path.dirname(entry), 'evaluator', 'LlamaContext', 'LlamaSampler.js');
const { LlamaSampler } = (await import(pathToFileURL(samplerFile).href)) as { LlamaSampler: { prototype: { applyConfig(config: unknown): unknown } } };

const backend = await createLlamaCppBackend({ modelPath: await ensureTinyGguf(dir), slots: 2, threads: 1, contextSize: 256 });
const original = LlamaSampler.prototype.applyConfig;
let poison = true;
LlamaSampler.prototype.applyConfig = function applyConfig(this: unknown, config: unknown) {
  if (poison) {
    poison = false;
    throw new TypeError('A number was expected');
  }
  return original.call(this, config);
};

const params: GenerateParams = { maxTokens: 8, temperature: 0, topP: null, seed: null, stop: null };
const generate = () => backend.generate({ messages: [{ role: 'user', content: 'hello' }], params, signal: new AbortController().signal });
const describe = (r: PromiseSettledResult<{ completionTokens: number }>) => {
  if (r.status === 'fulfilled') return { ok: true, completionTokens: r.value.completionTokens };
  const err = r.reason instanceof InterruptedGeneration ? r.reason.cause : r.reason;
  return { ok: false, kind: err instanceof BackendError ? err.kind : null, message: err instanceof Error ? err.message : String(err) };
};

const during = (await Promise.allSettled([generate(), generate()])).map(describe);
const after: ReturnType<typeof describe>[] = [];
for (let i = 0; i < 3; i++) after.push(describe((await Promise.allSettled([generate()]))[0] as PromiseSettledResult<{ completionTokens: number }>));
process.stdout.write(`${JSON.stringify({ during, after, faults: faultGuard.faults })}\n`);
if (mode === 'other') {
  void Promise.reject(new Error('a rejection from elsewhere'));
  await new Promise((resolve) => setTimeout(resolve, 60_000)); // the rejection must end the process first
}
await backend.close();
