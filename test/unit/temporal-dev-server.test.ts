import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { PortInUseError, listensOn, startTemporalDevServer } from '../../scripts/lib/temporal-dev-server.js';
import { freePort } from '../../scripts/lib/free-port.js';

async function listenOn(host: string): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { server, port: (server.address() as net.AddressInfo).port };
}

describe('startTemporalDevServer', () => {
  it('refuses a port another process listens on, says so, and never reports ready or spawns a server', async () => {
    for (const host of ['127.0.0.1', '0.0.0.0']) {
      const { server, port } = await listenOn(host);
      const log: string[] = [];
      try {
        const result = await startTemporalDevServer({ dbFile: null, port, uiPort: null, onLog: (line) => log.push(line) }).then(
          async (running) => {
            await running.stop();
            return running;
          },
          (e: Error) => e,
        );
        expect(result).toBeInstanceOf(PortInUseError);
        expect((result as Error).message).toMatch(new RegExp(`port ${port} is in use by another process.*SLUICE_TEMPORAL_PORT.*TEMPORAL_ADDRESS`));
        // No child was started: nothing of a dev server's output, no retries.
        expect(log).toEqual([]);
      } finally {
        server.close();
      }
    }
  });

  it('refuses a taken UI port the same way', async () => {
    const { server, port: uiPort } = await listenOn('127.0.0.1');
    try {
      const error = await startTemporalDevServer({ dbFile: null, port: await freePort(), uiPort }).then(
        async (running) => {
          await running.stop();
          return null;
        },
        (e: Error) => e,
      );
      expect(error).toBeInstanceOf(PortInUseError);
      expect(error?.message).toMatch(new RegExp(`the Temporal UI port ${uiPort} is in use by another process`));
    } finally {
      server.close();
    }
  });

  it('stops a start-up that is aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(startTemporalDevServer({ dbFile: null, port: await freePort(), uiPort: null, signal: controller.signal })).rejects.toThrow();
  });
});

describe('listensOn', () => {
  it('tells the process that holds a listening port from one that does not', async () => {
    const { server, port } = await listenOn('127.0.0.1');
    try {
      expect(await listensOn(process.pid, port)).toBe(true);
      expect(await listensOn(process.ppid, port)).toBe(false);
    } finally {
      server.close();
    }
  });
});
