/**
 * Which upstream base URLs Sluice may call. An openai-compatible deployment's `base_url` is admin
 * configuration, but it is still a URL the inference worker fetches from inside the network: a
 * base URL on a loopback, private or link-local address (the cloud metadata service at
 * 169.254.169.254, a database on 10.0.0.5, the worker's own ports) turns Sluice into a proxy into
 * that network (SSRF). Such targets are refused unless the operator lists them in
 * `SLUICE_ALLOW_PRIVATE_UPSTREAMS`.
 *
 * The API checks when a deployment is created; the inference worker checks again before every
 * call, because DNS answers change, and the connection itself resolves through `guardedLookup`
 * (`activities/net/address-guard.ts`, the ranges and guard webhook deliveries share), so the
 * address checked is the address connected to (no DNS rebinding between check and connect).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import net from 'node:net';
import { normaliseHost, privateRangeOf } from '../net/address-guard.js';

/** Resolves a hostname to every address it has (A and AAAA), as `dns.lookup` with `all: true`. */
export type LookupAll = (hostname: string) => Promise<string[]>;

export const lookupAll: LookupAll = async (hostname) => (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

/** Why a base URL was refused: `refused` (a non-public target) or `unresolvable` (DNS gave nothing). */
export class UpstreamAddressError extends Error {
  override readonly name = 'UpstreamAddressError';
  constructor(readonly reason: 'invalid' | 'refused' | 'unresolvable', message: string) {
    super(message);
  }
}

/**
 * Checks that `baseUrl` is http(s) and that its host and every address it resolves to are public,
 * unless the host or the address is in `allow` (`*` allows everything). Throws
 * {@link UpstreamAddressError}; returns the addresses checked.
 */
export async function checkUpstreamUrl(baseUrl: string, allow: readonly string[], lookup: LookupAll = lookupAll): Promise<string[]> {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new UpstreamAddressError('invalid', 'base_url is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UpstreamAddressError('invalid', 'base_url must be http or https');
  if (allow.includes('*')) return [];
  const host = normaliseHost(url.hostname);
  if (allow.includes(host)) return [];
  let addresses: string[];
  if (net.isIP(host) !== 0) addresses = [host];
  else {
    try {
      addresses = await lookup(host);
    } catch {
      addresses = [];
    }
    if (addresses.length === 0) throw new UpstreamAddressError('unresolvable', `host ${host} of base_url does not resolve`);
  }
  for (const address of addresses) {
    const range = privateRangeOf(address);
    if (range !== null && !allow.includes(normaliseHost(address))) {
      throw new UpstreamAddressError(
        'refused',
        `base_url host ${host} ${net.isIP(host) ? 'is' : `resolves to ${address},`} in ${range}; list it in SLUICE_ALLOW_PRIVATE_UPSTREAMS to allow it`,
      );
    }
  }
  return addresses;
}

