/** The data-directory check that runs before embedded PostgreSQL: a clear message instead of initdb's opaque failure. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { dataDirProblem } from '../../scripts/lib/embedded-postgres.js';

const made: string[] = [];
afterEach(async () => {
  for (const dir of made.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

async function tempDir(mode: number): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-datadir-'));
  made.push(dir);
  await fs.chmod(dir, mode);
  return dir;
}

describe('dataDirProblem', () => {
  it('as root, names a folder (mode 700, as mktemp -d makes it) that the postgres user cannot enter, and what to do', async () => {
    const dir = await tempDir(0o700);
    const problem = await dataDirProblem(path.join(dir, 'data', 'postgres'), 0);
    expect(problem).toContain(`cannot enter ${dir} (mode 700)`);
    expect(problem).toMatch(/chmod o\+x/);
    expect(problem).toMatch(/SLUICE_DATA_DIR/);
    expect(problem).toMatch(/DATABASE_URL/);
  });

  it('accepts a folder others may enter, and any folder when not root (postgres then runs as the same user)', async () => {
    const open = await tempDir(0o755);
    expect(await dataDirProblem(path.join(open, 'postgres'), 0)).toBeNull();
    const closed = await tempDir(0o700);
    expect(await dataDirProblem(path.join(closed, 'postgres'), 1000)).toBeNull();
  });

  it('names a path that is a file, not a folder', async () => {
    const dir = await tempDir(0o755);
    await fs.writeFile(path.join(dir, 'file'), '');
    expect(await dataDirProblem(path.join(dir, 'file', 'postgres'), 0)).toMatch(/is not a directory/);
  });
});
