/**
 * A served request's completion in one round trip (issue 18 target 1): `sluice_complete`
 * (migration 0811) prices and settles its usage (exactly once per request and step), records its
 * outcome on the request row and appends the outcome's audit row with the settled cost, in one
 * statement and one transaction, and says whether the deployment's circuit is clean and closed.
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
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

/** Runs `sluice_complete` for `w`. */
export async function completeRequest(db: Db, w: CompletionWrite): Promise<CompletionResult> {
  const u = w.usage;
  for (const [name, v] of Object.entries({ promptTokens: u.promptTokens, completionTokens: u.completionTokens, latencyMs: u.latencyMs })) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
  }
  const f = storedFields(w.audit);
  const content = auditContentAroundValue(f, 'cost_micros');
  const o = w.outcome;
  const { rows } = await sql<{ cost_micros: number; inserted: boolean; budget_events: boolean; circuit_clean: boolean; finished_seconds: number | null }>`
    select * from sluice_complete(${u.requestId}, ${u.step}, ${u.tenantId}, ${u.keyId}, ${u.kind}, ${u.model},
      ${u.deploymentId}, ${u.pool}, ${u.variant}, ${f.created_at}, ${u.promptTokens}, ${u.completionTokens}, ${u.latencyMs},
      ${u.cached === true}, ${periodOf(new Date())}, ${sql.val([...BUDGET_THRESHOLDS])}::integer[],
      ${f.actor}, ${f.tenant_id}, ${f.action}, ${f.target}, ${JSON.stringify(f.data)}::jsonb, ${w.audit.idempotencyKey}, ${content}::text[],
      ${o.status}, ${outcomeText(o.result)}, ${outcomeText(o.error)}, ${o.failureType ?? null}, ${o.pool ?? null}, ${new Date()}::timestamptz)`.execute(db);
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
