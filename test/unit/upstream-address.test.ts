/** Upstream base URLs: the address classifier, the check with an allow-list (lookup injected), and the connect-time guard (on loopback). */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { AddressRefusedError, guardedLookup, privateRangeOf } from '../../activities/net/address-guard.js';
import { checkUpstreamUrl, UpstreamAddressError, type LookupAll } from '../../activities/backends/upstream-address.js';

describe('privateRangeOf', () => {
  it.each([
    ['127.0.0.1', 'loopback'], ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private 10'], ['10.255.255.255', 'private 10'],
    ['172.16.0.1', 'private 172.16'], ['172.31.255.255', 'private 172.16'],
    ['192.168.1.1', 'private 192.168'],
    ['169.254.169.254', 'link-local 169.254'], ['169.254.0.1', 'link-local'],
    ['0.0.0.0', 'this network'], ['100.64.0.1', 'shared'], ['224.0.0.1', 'multicast'], ['255.255.255.255', 'reserved'],
    ['::1', 'loopback ::1'], ['::', 'unspecified'],
    ['fc00::1', 'unique local'], ['fd12:3456:789a::1', 'unique local'],
    ['fe80::1', 'link-local fe80'], ['febf:ffff::1', 'link-local fe80'], ['fe80::1%eth0', 'link-local fe80'],
    ['ff02::1', 'multicast'],
    // IPv4 inside IPv6: judged by the IPv4 address.
    ['::ffff:127.0.0.1', 'loopback 127'], ['::ffff:7f00:1', 'loopback 127'], ['::ffff:169.254.169.254', 'link-local 169.254'],
    ['::ffff:a9fe:a9fe', 'link-local 169.254'], ['64:ff9b::10.0.0.1', 'private 10'], ['::10.1.2.3', 'private 10'],
  ])('%s is not public (%s)', (ip, range) => {
    expect(privateRangeOf(ip)).toContain(range);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.15.255.255', '172.32.0.1', '192.167.1.1', '169.253.0.1', '11.0.0.1', '126.255.255.255',
    '2606:4700:4700::1111', '2001:4860:4860::8888', 'fbff::1', 'fec0::1'.replace('fec0', 'fe7f'), '::ffff:8.8.8.8', '64:ff9b::8.8.8.8'])(
    '%s is public', (ip) => {
      expect(privateRangeOf(ip)).toBeNull();
    },
  );

  it('returns null for something that is not an IP address', () => {
    expect(privateRangeOf('example.com')).toBeNull();
  });
});

describe('checkUpstreamUrl', () => {
  const dns = (table: Record<string, string[]>): LookupAll => async (host) => {
    const found = table[host];
    if (!found) throw new Error('ENOTFOUND');
    return found;
  };
  const lookup = dns({ 'api.example.com': ['93.184.216.34', '2606:2800:220:1::1'], 'evil.example.com': ['93.184.216.34', '169.254.169.254'], localhost: ['127.0.0.1', '::1'] });
  const refused = async (url: string, allow: string[] = []) => {
    const err = await checkUpstreamUrl(url, allow, lookup).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamAddressError);
    return err as UpstreamAddressError;
  };

  it('accepts a host whose every address is public', async () => {
    await expect(checkUpstreamUrl('https://api.example.com/v1', [], lookup)).resolves.toEqual(['93.184.216.34', '2606:2800:220:1::1']);
  });

  it('refuses literal private, loopback and metadata addresses, IPv4 and IPv6', async () => {
    for (const url of ['http://127.0.0.1:8080/v1', 'http://169.254.169.254/latest', 'http://10.1.2.3/v1', 'http://172.20.0.1/', 'http://192.168.0.10/',
      'http://[::1]:8000/v1', 'http://[fd00::1]/', 'http://[fe80::1]/', 'http://[::ffff:127.0.0.1]/', 'http://0.0.0.0:8080/', 'http://2130706433/']) {
      expect((await refused(url)).reason).toBe('refused');
    }
  });

  it('refuses a host when any of its addresses is private (all addresses are checked)', async () => {
    const err = await refused('https://evil.example.com/v1');
    expect(err.message).toContain('169.254.169.254');
    expect((await refused('http://localhost:8080/v1')).reason).toBe('refused');
  });

  it('allows listed hosts, listed addresses, and everything with *', async () => {
    await expect(checkUpstreamUrl('http://127.0.0.1:8080/v1', ['127.0.0.1'], lookup)).resolves.toEqual([]);
    await expect(checkUpstreamUrl('http://[::1]:8080/v1', ['::1'], lookup)).resolves.toEqual([]);
    await expect(checkUpstreamUrl('http://localhost:8080/v1', ['localhost'], lookup)).resolves.toEqual([]);
    await expect(checkUpstreamUrl('http://localhost:8080/v1', ['127.0.0.1', '::1'], lookup)).resolves.toEqual(['127.0.0.1', '::1']);
    await expect(checkUpstreamUrl('http://10.0.0.1/v1', ['*'], lookup)).resolves.toEqual([]);
    // Allowing one address does not allow another.
    expect((await refused('http://localhost:8080/v1', ['127.0.0.1'])).message).toContain('::1');
  });

  it('refuses what does not resolve and what is not http(s)', async () => {
    expect((await refused('https://nowhere.invalid/v1')).reason).toBe('unresolvable');
    expect((await refused('file:///etc/passwd')).reason).toBe('invalid');
    expect((await refused('not a url')).reason).toBe('invalid');
  });
});

describe('guardedLookup (the connect-time pin shared by upstreams and webhooks)', () => {
  const resolve = (allow: readonly string[], host: string) =>
    new Promise<{ err: Error | null; address: unknown }>((done) => {
      guardedLookup(allow)(host, { all: true }, (err, address) => done({ err, address }));
    });

  it('refuses a name that resolves to a non-public address unless the name or address is allowed', async () => {
    const refused = await resolve([], 'localhost');
    expect(refused.err).toBeInstanceOf(AddressRefusedError);
    expect(refused.err?.message).toMatch(/localhost resolves to .* \(loopback/);
    expect((refused.err as AddressRefusedError).safeMessage).not.toMatch(/127\.0\.0\.1|::1/);
    expect((await resolve(['localhost'], 'localhost')).err).toBeNull();
    expect((await resolve(['*'], 'localhost')).err).toBeNull();
  });

  it('is the lookup the socket connects with: a refused name never reaches the listener', async () => {
    let connections = 0;
    const server = net.createServer((socket) => {
      connections += 1;
      socket.destroy();
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const port = (server.address() as net.AddressInfo).port;
    const connect = (allow: readonly string[]) =>
      new Promise<Error | null>((done) => {
        const socket = net.connect({ host: 'localhost', port, family: 4, lookup: guardedLookup(allow) });
        socket.once('connect', () => {
          socket.destroy();
          done(null);
        });
        socket.once('error', (err) => done(err));
      });
    try {
      expect(await connect([])).toBeInstanceOf(AddressRefusedError);
      expect(connections).toBe(0);
      expect(await connect(['127.0.0.1'])).toBeNull();
    } finally {
      await new Promise<void>((done) => server.close(() => done()));
    }
  });
});
