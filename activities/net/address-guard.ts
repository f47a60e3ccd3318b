/**
 * The guard shared by every outbound connection Sluice makes on behalf of configuration it does
 * not fully trust (openai-compatible upstreams, tenants' webhook endpoints): which addresses are
 * not the public internet, the allow-lists that admit some anyway, and a `lookup` for sockets that
 * refuses a non-public address at connect time, so the address checked is the address connected
 * to (no DNS rebinding between a check and the connection). Loopback, private, link-local and other
 * reserved targets would otherwise turn Sluice into a proxy into its own network (SSRF).
 */
import dns from 'node:dns';
import net from 'node:net';

/** A named address range that is not the public internet. */
interface Range {
  name: string;
  /** Octets (IPv4) or 16-bit groups (IPv6) of the range's first address. */
  prefix: number[];
  bits: number;
}

const V4_RANGES: readonly Range[] = [
  { name: 'this network 0.0.0.0/8', prefix: [0, 0, 0, 0], bits: 8 },
  { name: 'private 10.0.0.0/8', prefix: [10, 0, 0, 0], bits: 8 },
  { name: 'shared address space 100.64.0.0/10', prefix: [100, 64, 0, 0], bits: 10 },
  { name: 'loopback 127.0.0.0/8', prefix: [127, 0, 0, 0], bits: 8 },
  { name: 'link-local 169.254.0.0/16', prefix: [169, 254, 0, 0], bits: 16 },
  { name: 'private 172.16.0.0/12', prefix: [172, 16, 0, 0], bits: 12 },
  { name: 'IETF protocol assignments 192.0.0.0/24', prefix: [192, 0, 0, 0], bits: 24 },
  { name: 'private 192.168.0.0/16', prefix: [192, 168, 0, 0], bits: 16 },
  { name: 'benchmarking 198.18.0.0/15', prefix: [198, 18, 0, 0], bits: 15 },
  { name: 'multicast 224.0.0.0/4', prefix: [224, 0, 0, 0], bits: 4 },
  { name: 'reserved 240.0.0.0/4', prefix: [240, 0, 0, 0], bits: 4 },
];

const V6_RANGES: readonly Range[] = [
  { name: 'unspecified ::/128', prefix: [0, 0, 0, 0, 0, 0, 0, 0], bits: 128 },
  { name: 'loopback ::1/128', prefix: [0, 0, 0, 0, 0, 0, 0, 1], bits: 128 },
  { name: 'unique local fc00::/7', prefix: [0xfc00, 0, 0, 0, 0, 0, 0, 0], bits: 7 },
  { name: 'link-local fe80::/10', prefix: [0xfe80, 0, 0, 0, 0, 0, 0, 0], bits: 10 },
  { name: 'site-local fec0::/10', prefix: [0xfec0, 0, 0, 0, 0, 0, 0, 0], bits: 10 },
  { name: 'multicast ff00::/8', prefix: [0xff00, 0, 0, 0, 0, 0, 0, 0], bits: 8 },
];

function matches(parts: readonly number[], range: Range, width: number): boolean {
  let bits = range.bits;
  for (let i = 0; bits > 0; i += 1) {
    const take = Math.min(width, bits);
    const mask = ((1 << take) - 1) << (width - take);
    if (((parts[i] ?? 0) & mask) !== ((range.prefix[i] ?? 0) & mask)) return false;
    bits -= take;
  }
  return true;
}

function v4Parts(ip: string): number[] {
  return ip.split('.').map(Number);
}

/** The eight 16-bit groups of an IPv6 address (`::` expanded, a trailing dotted quad converted). */
function v6Parts(ip: string): number[] {
  let text = ip.split('%')[0] ?? ip; // zone index (fe80::1%eth0)
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad?.[1]) {
    const [a = 0, b = 0, c = 0, d = 0] = v4Parts(quad[1]);
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((g) => parseInt(g, 16));
}

/**
 * Names the non-public range an IP address is in, or returns null for a public address (or a
 * string that is not an IP address). IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible and NAT64
 * (`64:ff9b::/96`) IPv6 addresses are judged by the IPv4 address they carry.
 */
export function privateRangeOf(ip: string): string | null {
  const family = net.isIP(ip.split('%')[0] ?? '');
  if (family === 4) {
    const parts = v4Parts(ip);
    return V4_RANGES.find((r) => matches(parts, r, 8))?.name ?? null;
  }
  if (family !== 6) return null;
  const g = v6Parts(ip);
  const embedsV4 =
    (g.slice(0, 5).every((x) => x === 0) && (g[5] === 0xffff || (g[5] === 0 && ((g[6] ?? 0) !== 0 || (g[7] ?? 0) > 1)))) ||
    (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0));
  if (embedsV4) {
    const hi = g[6] ?? 0;
    const lo = g[7] ?? 0;
    return privateRangeOf(`${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`);
  }
  return V6_RANGES.find((r) => matches(g, r, 16))?.name ?? null;
}

/** Normalises an allow-list entry or URL hostname: lower case, IPv6 brackets removed. */
export function normaliseHost(host: string): string {
  return host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
}

/** Is `host` (as written in the URL) or the `address` it resolved to in the allow-list (`*` = all)? */
export function isAllowedHost(allow: readonly string[], host: string, address?: string): boolean {
  return allow.includes('*') || allow.includes(normaliseHost(host)) || (address !== undefined && allow.includes(normaliseHost(address)));
}

/**
 * A connection was refused because its host resolved to a non-public address. `message` names the
 * host, address and range: for logs and operators only (a tenant must not learn what an internal
 * name resolves to); `safeMessage` says the same without them.
 */
export class AddressRefusedError extends Error {
  override readonly name = 'AddressRefused';
  readonly safeMessage = 'the host resolves to a loopback, private or reserved address';
}

/**
 * A `lookup` for `net`/`http(s).request` (and agents) that resolves as `dns.lookup` does and
 * refuses, with {@link AddressRefusedError}, when any address it returns is non-public and neither
 * the host nor that address is allowed. Because the socket connects to what this returns, the
 * address checked is the address used. (Node skips `lookup` for IP literals: check those with
 * {@link privateRangeOf} before connecting.)
 */
export function guardedLookup(allow: readonly string[]): net.LookupFunction {
  return ((hostname: string, options: dns.LookupOptions, callback: (err: Error | null, address: string | dns.LookupAddress[], family?: number) => void) => {
    dns.lookup(hostname, { ...options }, (err, address: string | dns.LookupAddress[], family?: number) => {
      if (err) return callback(err, address, family);
      const list = Array.isArray(address) ? address : [{ address, family: family ?? 4 }];
      for (const a of list) {
        const range = privateRangeOf(a.address);
        if (range !== null && !isAllowedHost(allow, hostname, a.address)) {
          return callback(new AddressRefusedError(`${hostname} resolves to ${a.address} (${range})`), address, family);
        }
      }
      callback(null, address, family);
    });
  }) as net.LookupFunction;
}
