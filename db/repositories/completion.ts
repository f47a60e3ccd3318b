/**
 * A served request's completion in one round trip (issue 18 target 1): `sluice_complete`
 * (migration 0811) prices and settles its usage (exactly once per request and step), records its
 * outcome on the request row and appends the outcome's audit row with the settled cost, in one
 * statement and one transaction, and says whether the deployment's circuit is clean and closed.
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import { preparedQuery } from '../prepared-query.js';
import type { UsageEntry } from '../../contracts/chat.js';
import { periodOf } from '../../domain/billing-calendar.js';
import { auditContentAroundValue, storedFields, type AuditEntry } from './audit.js';
import { BUDGET_THRESHOLDS } from './quota.js';
import { outcomeText, type RequestOutcome } from './requests.js';

/** What one completion writes. */
export interface CompletionWrite {
  /** The usage to price and settle; it is dated at `audit.at`. */
  usage: UsageEntry;
  /** The outcome's audit row; its data gets `cost_micros`, the settled cost. */
  audit: AuditEntry;
  outcome: RequestOutcome;
}

export interface CompletionResult {
  /** The usage row's cost as stored (a retry gets the first call's). */
  costMicros: number;
  /** This call wrote the usage row (false: a retry found it). */
  inserted: boolean;
  /** Budget thresholds may name this request (emit them). */
  budgetEvents: boolean;
  /** The deployment's circuit is closed with no failures: a success changes nothing on it. */
  circuitClean: boolean;
  /** The request this call finished, with its seconds from creation (null: already finished). */
  finished: { id: string; seconds: number } | null;
}

/**
 * The statement of {@link completeRequest}, compiled once and named (every served request runs
 * it): its columns named, so PostgreSQL parses it once per connection.
 */
const completeQuery = preparedQuery(
  {
    requestId: 'string', step: 'string', tenantId: 'string', keyId: 'string', kind: 'string', model: 'string', deploymentId: 'string',
    pool: 'string', variant: 'string-or-null', at: 'date', promptTokens: 'value', completionTokens: 'value', latencyMs: 'value',
    cached: 'value', period: 'string', actor: 'string', auditTenantId: 'string-or-null', action: 'string', target: 'string-or-null',
    data: 'string', idempotencyKey: 'string-or-null', content: 'value', status: 'string', result: 'string-or-null', error: 'string-or-null',
    failureType: 'string-or-null', outcomePool: 'string-or-null', now: 'date',
  },
  (db, p) => ({
    compile: () => sql<{ cost_micros: number; inserted: boolean; budget_events: boolean; circuit_clean: boolean; finished_seconds: number | null }>`
      select cost_micros, inserted, budget_events, circuit_clean, finished_seconds from sluice_complete(${p.requestId}, ${p.step}, ${p.tenantId}, ${p.keyId}, ${p.kind}, ${p.model},
        ${p.deploymentId}, ${p.pool}, ${p.variant}, ${p.at}, ${p.promptTokens}, ${p.completionTokens}, ${p.latencyMs},
        ${p.cached}, ${p.period}, ${sql.val([...BUDGET_THRESHOLDS])}::integer[],
        ${p.actor}, ${p.auditTenantId}, ${p.action}, ${p.target}, ${p.data}::jsonb, ${p.idempotencyKey}, ${p.content}::text[],
        ${p.status}, ${p.result}, ${p.error}, ${p.failureType}, ${p.outcomePool}, ${p.now}::timestamptz)`.compile(db),
  }),
);

/** Runs `sluice_complete` for `w`. */
export async function completeRequest(db: Db, w: CompletionWrite): Promise<CompletionResult> {
  const u = w.usage;
  for (const [name, v] of Object.entries({ promptTokens: u.promptTokens, completionTokens: u.completionTokens, latencyMs: u.latencyMs })) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  }
  const f = storedFields(w.audit);
  const content = auditContentAroundValue(f, 'cost_micros');
  const o = w.outcome;
  const { rows } = await db.executeQuery(completeQuery(db, {
    requestId: u.requestId, step: u.step, tenantId: u.tenantId, keyId: u.keyId, kind: u.kind, model: u.model,
    deploymentId: u.deploymentId, pool: u.pool, variant: u.variant, at: f.created_at, promptTokens: u.promptTokens,
    completionTokens: u.completionTokens, latencyMs: u.latencyMs, cached: u.cached === true, period: periodOf(new Date()),
    actor: f.actor, auditTenantId: f.tenant_id, action: f.action, target: f.target, data: JSON.stringify(f.data),
    idempotencyKey: w.audit.idempotencyKey, content, status: o.status, result: outcomeText(o.result), error: outcomeText(o.error),
    failureType: o.failureType ?? null, outcomePool: o.pool ?? null, now: new Date(),
  }));
  const row = rows[0];
  if (!row) throw new Error('sluice_complete returned no row');
  return {
    costMicros: Number(row.cost_micros),
    inserted: row.inserted,
    budgetEvents: row.budget_events,
    circuitClean: row.circuit_clean,
    finished: row.finished_seconds === null ? null : { id: o.id, seconds: Math.max(0, Number(row.finished_seconds)) },
  };
}
