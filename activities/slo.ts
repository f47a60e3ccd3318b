/**
 * The SLA step of the monthly billing workflow (behind `patched('sla-credits')`): measures a
 * tenant's availability over a closed period against its plan's SLA. Read-only; the close writes
 * the credit it earns (`db/repositories/slos.ts` `writeSlaCredit`), once.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Db } from '../db/database.js';
import { getPlanSla, tenantAvailability } from '../db/repositories/slos.js';
import { getTenant } from '../db/repositories/tenants.js';
import { periodRange } from '../domain/billing-calendar.js';
import type { SlaMeasurement } from '../contracts/billing.js';
import type { FailureType } from '../contracts/failures.js';

export function createSloActivities(deps: { db: Db; now: () => Date }) {
  return {
    /**
     * The tenant's SLA measurement for `period`: its plan's SLA (as it stands now) and its
     * availability over the requests accepted in the period. Null when the plan carries no SLA.
     * A period that has not ended is refused (non-retryable `PeriodOpen`, as the close does).
     */
    async measureSla(input: { tenantId: string; period: string }): Promise<SlaMeasurement | null> {
      const { start, end } = periodRange(input.period);
      if (end > deps.now()) {
        throw ApplicationFailure.create({ type: 'PeriodOpen', message: `period ${input.period} ends at ${end.toISOString()}; its SLA cannot be measured yet`, nonRetryable: true });
      }
      const tenant = await getTenant(deps.db, input.tenantId);
      if (!tenant) throw ApplicationFailure.create({ type: 'NotFound' satisfies FailureType, message: `tenant ${input.tenantId} not found`, nonRetryable: true });
      const sla = await getPlanSla(deps.db, tenant.plan);
      if (!sla) return null;
      const counts = await tenantAvailability(deps.db, input.tenantId, start, end);
      return { plan: tenant.plan, targetPpm: sla.targetPpm, tiers: sla.tiers, ...counts };
    },
  };
}
