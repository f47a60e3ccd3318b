/**
 * Which requests the response cache may answer, and how the request headers steer it (README
 * "Response cache"). Pure and free of Node built-ins: the request pipeline (workflow code) reads it.
 */
import type { CacheDirective, GenerateParams } from '../contracts/chat.js';

export type { CacheDirective };

/** The header that forces a lookup (`force`) or asks for the default (`auto`); answered with `hit` or `miss`. */
export const CACHE_HEADER = 'x-sluice-cache';

/** A bad cache header: its name and a message for the client. */
export class CacheHeaderError extends Error {
  override readonly name = 'CacheHeaderError';
  constructor(readonly header: string, message: string) {
    super(message);
  }
}

/**
 * The directive of a request's `Cache-Control` and `X-Sluice-Cache` headers (null = neither asks
 * anything). `no-store` wins over `no-cache` (it asks for less), and both over `force`. Other
 * `Cache-Control` directives are ignored, as HTTP says; an `X-Sluice-Cache` other than `force` or
 * `auto` is refused ({@link CacheHeaderError}).
 */
export function cacheDirectiveOf(cacheControl: string | undefined, sluiceCache: string | undefined): CacheDirective | null {
  const directives = (cacheControl ?? '').split(',').map((d) => d.trim().toLowerCase().split('=')[0] ?? '');
  let forced = false;
  if (sluiceCache !== undefined) {
    const v = sluiceCache.trim().toLowerCase();
    if (v !== 'force' && v !== 'auto') throw new CacheHeaderError('X-Sluice-Cache', 'X-Sluice-Cache must be force or auto');
    forced = v === 'force';
  }
  if (directives.includes('no-store')) return 'no-store';
  if (directives.includes('no-cache')) return 'no-cache';
  return forced ? 'force' : null;
}

/**
 * Whether a request's answer is a function of the request alone, so a stored one may stand for
 * it: greedy sampling (`temperature: 0`) or an explicit `seed`. (`n` above 1 is refused at the
 * door, so one choice is all a request ever has.)
 */
export function isDeterministic(params: Pick<GenerateParams, 'temperature' | 'seed'>): boolean {
  return params.temperature === 0 || params.seed !== null;
}

/** Whether the pipeline consults the cache for a request with these resolved params and directive. */
export function consultsCache(params: Pick<GenerateParams, 'temperature' | 'seed'>, directive: CacheDirective | null | undefined): boolean {
  return directive !== 'no-store' && isDeterministic(params);
}
