/**
 * A demo model that can start a call in node-llama-cpp's general wrapper syntax: the tiny GGUF's
 * words plus `||call:` (the wrapper's call prefix), so the prefix is one token (`▁||call:`) that a
 * test can favour with `logit_bias`. Everything else is the tiny model's (random weights).
 */
import { readGgufFileInfo } from 'node-llama-cpp';
import { DEFAULT_WORDS, writeTinyGguf } from '../../workers/llama/tiny-gguf.js';

/** The file name under the test data dir's `models/` (written by global-setup.ts). */
export const CALLS_GGUF = 'sluice-calls.gguf';

/** Writes the model to `path`. */
export function writeCallsGguf(path: string): Promise<void> {
  return writeTinyGguf(path, { words: [...DEFAULT_WORDS, '||call:'], name: 'sluice-calls' });
}

/** The token ID of `▁||call:` in the model at `path`. */
export async function callPrefixToken(path: string): Promise<number> {
  const info = await readGgufFileInfo(path, { readTensorInfo: false });
  const id = (info.metadata.tokenizer.ggml.tokens as readonly string[]).indexOf('▁||call:');
  if (id < 0) throw new Error(`${path} has no ||call: token`);
  return id;
}
