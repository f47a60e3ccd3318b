/**
 * The webhook URL guard at registration: only http(s), no credentials, no literal loopback,
 * private or link-local address unless allowed. Host names are checked on every connection, when
 * they resolve (`guardedLookup` of `net/address-guard.ts`, used by the delivery's POST).
 */
import net from 'node:net';
import { isAllowedHost, normaliseHost, privateRangeOf } from './net/address-guard.js';

/**
 * Why a webhook URL is refused at registration, or null: not http(s), or a literal private IP
 * not allowed. (Names are checked on every connection, when they resolve.)
 */
export function webhookUrlProblem(raw: string, allow: readonly string[]): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'url is not a URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'url must be http or https';
  if (url.username || url.password) return 'url must not carry credentials';
  const host = normaliseHost(url.hostname);
  const range = net.isIP(host) ? privateRangeOf(host) : host === 'localhost' || host.endsWith('.localhost') ? 'loopback' : null;
  if (range !== null && !isAllowedHost(allow, host)) return `url host ${host} is ${range}; list it in SLUICE_ALLOW_PRIVATE_WEBHOOKS to allow it`;
  return null;
}
