import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startTemporalDevServer } from '../../scripts/lib/temporal-dev-server.js';

describe('startTemporalDevServer', () => {
  it('retries a server that dies during start-up and then reports why, with its own output', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    const log: string[] = [];
    try {
      const error = await startTemporalDevServer({ dbFile: null, port, uiPort: null, onLog: (line) => log.push(line) }).then(
        () => null,
        (e: Error) => e,
      );
      expect(error?.message).toMatch(/exited with 1 during start-up/);
      expect(error?.message).toMatch(new RegExp(`can't set frontend port ${port}.*address already in use`));
      expect(log.filter((line) => line.includes('start attempt')).map((line) => line.split('\n').at(-1))).toEqual([
        '(start attempt 1 of 3 failed; retrying)',
        '(start attempt 2 of 3 failed; retrying)',
      ]);
    } finally {
      blocker.close();
    }
  });
});
