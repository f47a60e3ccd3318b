/** The SDK's logger over Sluice's (quiet start-up) and the TLS options built from the configured files. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../runtime/logger.js';
import { sdkLogger, temporalTlsOptions } from '../../runtime/temporal-runtime.js';
import { ConfigError } from '../../runtime/config.js';

describe('sdkLogger', () => {
  it('puts the SDK\'s info lines (bundler report, worker state) at debug and keeps warnings and errors', () => {
    const lines: Array<{ level: string; msg: string }> = [];
    const sdk = sdkLogger(createLogger('info', {}, (line) => lines.push(JSON.parse(line) as { level: string; msg: string })));
    sdk.info('Workflow bundle created', { size: '1.75MB' });
    sdk.info('Worker state changed', { state: 'RUNNING' });
    sdk.debug('d');
    sdk.trace('t');
    sdk.warn('No workflows registered, not polling for workflow tasks');
    sdk.warn('something to know');
    sdk.error('something broke');
    expect(lines.map((l) => `${l.level} ${l.msg}`)).toEqual(['warn something to know', 'error something broke']);

    const debug: string[] = [];
    const verbose = sdkLogger(createLogger('debug', {}, (line) => debug.push(line)));
    verbose.info('Worker state changed', { state: 'RUNNING', nested: { a: 1 } });
    expect(JSON.parse(debug[0] ?? '{}')).toMatchObject({ level: 'debug', msg: 'Worker state changed', state: 'RUNNING', nested: '{"a":1}', sdk: true });
  });
});

describe('temporalTlsOptions', () => {
  it('is plaintext without TLS config, and reads the CA, the client pair and the server name', async () => {
    expect(await temporalTlsOptions(null)).toBeUndefined();
    expect(await temporalTlsOptions({ caFile: null, certFile: null, keyFile: null, serverName: null })).toEqual({});
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-tls-'));
    try {
      for (const name of ['ca.pem', 'client.pem', 'client.key']) await fs.writeFile(path.join(dir, name), `-----${name}-----`);
      const tls = await temporalTlsOptions({
        caFile: path.join(dir, 'ca.pem'), certFile: path.join(dir, 'client.pem'), keyFile: path.join(dir, 'client.key'), serverName: 'temporal.internal',
      });
      expect(tls?.serverNameOverride).toBe('temporal.internal');
      expect(Buffer.from(tls?.serverRootCACertificate ?? []).toString()).toBe('-----ca.pem-----');
      expect(Buffer.from(tls?.clientCertPair?.crt ?? []).toString()).toBe('-----client.pem-----');
      expect(Buffer.from(tls?.clientCertPair?.key ?? []).toString()).toBe('-----client.key-----');
      const missing = path.join(dir, 'missing.pem');
      const error = await temporalTlsOptions({ caFile: missing, certFile: null, keyFile: null, serverName: null }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toBe(`TEMPORAL_TLS_CA: cannot read ${missing} (ENOENT)`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
