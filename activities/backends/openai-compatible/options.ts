/** How an OpenAI-compatible backend is configured: {@link OpenAICompatibleBackendOptions}. */

/** How to reach one OpenAI-compatible upstream deployment. */
export interface OpenAICompatibleBackendOptions {
  /** Base URL of the upstream API, including the version path, e.g. `https://api.openai.com/v1`. */
  baseURL: string;
  /** Bearer key for the upstream; `null` sends no `Authorization` header (a keyless local server). */
  apiKey: string | null;
  /** The model name as the upstream knows it (not Sluice's public model name). */
  model: string;
  /**
   * Upper bound of one HTTP call, headers and body, in milliseconds. A timeout is `unavailable`.
   * @default 600000
   */
  timeoutMs?: number;
  /**
   * Hosts or addresses the connection may reach although they are loopback, private or link-local
   * (`*` = all); every other host is refused at connect time, on the address actually connected to.
   * @default [] (see `SLUICE_ALLOW_PRIVATE_UPSTREAMS`)
   */
  allowPrivateHosts?: readonly string[];
  /**
   * Largest upstream response body read; past it the call fails as `too_large` (not retried).
   * @default DEFAULT_MAX_RESPONSE_BYTES (4 MiB)
   */
  maxResponseBytes?: number;
  /**
   * The `fetch` implementation the client uses (tests). Replacing it drops the connect-time
   * address guard, the redirect refusal and the size cap of `createPinnedFetch` (../pinned-fetch.ts).
   * @default createPinnedFetch({ allow: allowPrivateHosts, maxResponseBytes })
   */
  fetch?: typeof fetch;
}

/** 4 MiB: a completion larger than Temporal's 2 MB payload limit cannot be returned anyway. */
export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
