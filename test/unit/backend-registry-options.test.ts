/**
 * Every process that runs inference workers builds its backends from the same options: the
 * standalone `npm run worker:inference` (startInferenceOnly) used to leave out the upstream
 * response cap and SLUICE_ENABLE_INSTANT_BACKEND, so the instant model failed there as a bad
 * request and upstream answers were read without the configured bound.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../runtime/config.js';
import { backendRegistryOptions } from '../../scripts/lib/system.js';
import { createBackendRegistry } from '../../activities/backends/registry.js';
import type { DeploymentTarget } from '../../contracts/chat.js';

const instant: DeploymentTarget = {
  id: 'i', model: 'm', pool: 'p', provider: 'instant', ggufPath: null, baseUrl: null, apiKeyRef: null, upstreamModel: null, weight: 1, priority: 0,
};
const request = { messages: [{ role: 'user' as const, content: 'hi' }], params: { maxTokens: 2, temperature: 0, topP: null, seed: null, stop: null }, signal: new AbortController().signal };

describe('backendRegistryOptions', () => {
  it('carries the response cap and the instant backend switch from the config', async () => {
    const config = loadConfig({ SLUICE_DATA_DIR: '/nonexistent', SLUICE_ENABLE_INSTANT_BACKEND: 'true', SLUICE_UPSTREAM_MAX_RESPONSE_BYTES: String(128 * 1024) });
    const options = backendRegistryOptions(config);
    expect(options).toMatchObject({ enableInstantBackend: true, maxResponseBytes: 128 * 1024, slots: config.slots, threads: config.threads, dataDir: '/nonexistent' });
    const registry = createBackendRegistry(options);
    expect((await (await registry.get(instant)).generate(request)).content).toBe('ok');
    await registry.close();
  });

  it('leaves the instant backend off unless enabled', async () => {
    const registry = createBackendRegistry(backendRegistryOptions(loadConfig({ SLUICE_DATA_DIR: '/nonexistent' })));
    await expect(registry.get(instant)).rejects.toMatchObject({ kind: 'bad_request' });
    await registry.close();
  });
});
