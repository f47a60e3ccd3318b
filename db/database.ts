/** Opens the PostgreSQL pool and the Kysely instance over it. */
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './tables/index.js';
import type { DbTimeouts } from '../contracts/limits.js';
import { usePreparedNames } from './prepared-query.js';

export type Db = Kysely<Database>;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

function parseSafeInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`integer ${value} is outside the safe range`);
  return n;
}

/** Options of {@link createDb}. */
export interface DbOptions {
  /** PostgreSQL connection string. */
  connectionString: string;
  /** Pool size. @default 10 */
  max?: number;
  /** Application name shown in pg_stat_activity. @default "sluice" */
  applicationName?: string;
  /** Bounds on statements, open transactions and waiting for a connection. @default no bounds */
  timeouts?: DbTimeouts;
}

export type { DbTimeouts } from '../contracts/limits.js';

/** The message `pg.Pool` rejects with when no connection came free within `connectionTimeoutMillis`. */
const POOL_TIMEOUT_MESSAGE = 'timeout exceeded when trying to connect';

/** Whether `err` is the pool's acquire timeout (every connection busy), not a database error. */
export function isPoolTimeout(err: unknown): boolean {
  return err instanceof Error && err.message === POOL_TIMEOUT_MESSAGE;
}

/** Creates a pool whose int8 and numeric values come back as numbers, and Kysely over it. */
export function createDb(options: DbOptions): { db: Db; pool: pg.Pool } {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'sluice',
    ...(options.timeouts
      ? {
        statement_timeout: options.timeouts.statementTimeoutMs,
        idle_in_transaction_session_timeout: options.timeouts.idleInTransactionTimeoutMs,
        connectionTimeoutMillis: options.timeouts.acquireTimeoutMs,
      }
      : {}),
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID || oid === NUMERIC_OID
          ? parseSafeInteger
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  pool.on('error', () => {
    // An idle client lost its connection; the pool replaces it. Queries report their own errors.
  });
  // A client in use whose connection breaks (PostgreSQL restarted: EPIPE while a query is being
  // written) emits 'error' besides failing its query; unheard, that event ended the process
  // (test/cluster/faults.test.ts). The query reports the error; the pool drops the broken client
  // when it is released.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
    // The hot statements of `preparedQuery` go as named statements: parsed once per connection.
    usePreparedNames(client);
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, pool };
}
