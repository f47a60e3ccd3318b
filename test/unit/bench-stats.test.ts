/**
 * `bench/stats.ts`' CPU readings: PostgreSQL's CPU only grows when one of its processes exits (the
 * postmaster's reaped children's time counts it), a reading that went down is "not measured"
 * (`cpuSpent`), and a per-request figure over no successful request is null (`perUnit`), never
 * Infinity or NaN. The exiting child is a real process, reaped by this one standing in for the
 * postmaster.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuSpent, perUnit, postgresCpuMs } from '../../bench/stats.js';

describe('postgresCpuMs', () => {
  it('keeps an exited child\'s CPU: the reading after it was reaped is not below the one while it lived', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'sluice-stats-'));
    try {
      // This process as the "postmaster" of a data dir, its child as a backend.
      await writeFile(path.join(dir, 'postmaster.pid'), `${process.pid}\n${dir}\n`);
      // The child burns 300 ms of its own CPU (counted in CPU time, not wall time), says so, and waits.
      const child = spawn(process.execPath, ['-e', `
        while (process.cpuUsage().user < 300000) {}
        process.stdout.write('burnt\\n');
        setInterval(() => undefined, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
      await once(child.stdout, 'data');
      const alive = postgresCpuMs(dir);
      child.kill('SIGKILL');
      await once(child, 'exit');
      const reaped = postgresCpuMs(dir);
      expect(alive).not.toBeNull();
      expect(reaped).not.toBeNull();
      expect(reaped as number).toBeGreaterThanOrEqual(alive as number);
      expect(cpuSpent(alive, reaped)).not.toBeNull();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is null without a data dir or a readable postmaster.pid', () => {
    expect(postgresCpuMs(undefined)).toBeNull();
    expect(postgresCpuMs(path.join(os.tmpdir(), 'sluice-no-such-dir'))).toBeNull();
  });
});

describe('cpuSpent and perUnit', () => {
  it('a reading that went down, or a missing one, is not measured', () => {
    expect(cpuSpent(100, 250)).toBe(150);
    expect(cpuSpent(250, 100)).toBeNull();
    expect(cpuSpent(null, 100)).toBeNull();
    expect(cpuSpent(100, null)).toBeNull();
  });

  it('no successful unit gives null, not a division by zero', () => {
    expect(perUnit(125, 0)).toBeNull();
    expect(perUnit(0, 0)).toBeNull();
    expect(perUnit(null, 10)).toBeNull();
    expect(perUnit(125, 10)).toBe(12.5);
    expect(perUnit(1, 3, 2)).toBe(0.33);
    expect(perUnit(1000, 3, 0)).toBe(333);
  });
});
