/**
 * Usage-ledger rules shared by the API, the repository and the CLI. Pure: no I/O, no imports, so
 * the CLI (an HTTP client that never opens the database) can take the same list as the API.
 */

/** What `GET /v1/admin/usage?group_by=` accepts, in the order help and errors list them. */
export const USAGE_GROUPS = ['day', 'model', 'key', 'variant', 'deployment', 'kind', 'batch'] as const;

/** One value of {@link USAGE_GROUPS}. */
export type UsageGroup = (typeof USAGE_GROUPS)[number];
