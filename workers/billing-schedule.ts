/**
 * The billing Schedules, created idempotently when a control worker starts (`temporal schedule
 * list` shows them): on the 1st of every month at 00:10 UTC `billingRun` for the previous month;
 * every day at 00:05 UTC `dayClose` for the previous day.
 */
import { ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { createScheduleOnce } from './schedules.js';
import type { BillingRunInput, DayCloseInput } from '../contracts/billing.js';
import { BILLING_SCHEDULE_ID, CONTROL_TASK_QUEUE, DAY_CLOSE_SCHEDULE_ID } from '../contracts/ids.js';

/**
 * Runs still going when the next fires are skipped; a missed firing (server down) is caught up
 * within a day.
 */
const POLICIES = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' } as const;

/** Creates the monthly billing Schedule unless it exists. Returns whether this call created it. */
export async function ensureBillingSchedule(client: Client): Promise<boolean> {
  const args: [BillingRunInput] = [{ period: null, tenantIds: null }];
  return createScheduleOnce(client, {
    scheduleId: BILLING_SCHEDULE_ID,
    spec: { calendars: [{ dayOfMonth: 1, hour: 0, minute: 10, comment: 'bill the previous month, 00:10 UTC' }] },
    // The Schedule appends the scheduled time to the workflow ID: one run ID per month.
    action: { type: 'startWorkflow', workflowType: 'billingRun', workflowId: 'billing-run-scheduled', taskQueue: CONTROL_TASK_QUEUE, args },
    policies: POLICIES,
    memo: { owner: 'sluice', purpose: 'monthly invoices' },
  });
}

/** Creates the daily day-close Schedule unless it exists. Returns whether this call created it. */
export async function ensureDayCloseSchedule(client: Client): Promise<boolean> {
  const args: [DayCloseInput] = [{ day: null, tenantId: null }];
  return createScheduleOnce(client, {
    scheduleId: DAY_CLOSE_SCHEDULE_ID,
    spec: { calendars: [{ hour: 0, minute: 5, comment: 'close the previous day, 00:05 UTC' }] },
    // One run ID per day.
    action: { type: 'startWorkflow', workflowType: 'dayClose', workflowId: 'day-close-scheduled', taskQueue: CONTROL_TASK_QUEUE, args },
    policies: POLICIES,
    memo: { owner: 'sluice', purpose: 'daily close of the usage ledger' },
  });
}
