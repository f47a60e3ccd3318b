/**
 * The billing Schedules, created idempotently when a control worker starts (`temporal schedule
 * list` shows them): on the 1st of every month at 00:10 UTC `billingRun` for the previous month;
 * every day at 00:05 UTC `dayClose` for the previous day.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { BILLING_SCHEDULE_ID, CONTROL_TASK_QUEUE, DAY_CLOSE_SCHEDULE_ID, type BillingRunInput, type DayCloseInput } from '../workflows/contracts.js';

/** Creates the monthly billing Schedule unless it exists. Returns whether this call created it. */
export async function ensureBillingSchedule(client: Client): Promise<boolean> {
  const args: [BillingRunInput] = [{ period: null, tenantIds: null }];
  try {
    await client.schedule.create({
      scheduleId: BILLING_SCHEDULE_ID,
      spec: { calendars: [{ dayOfMonth: 1, hour: 0, minute: 10, comment: 'bill the previous month, 00:10 UTC' }] },
      action: {
        type: 'startWorkflow',
        workflowType: 'billingRun',
        // The Schedule appends the scheduled time: one run ID per month.
        workflowId: 'billing-run-scheduled',
        taskQueue: CONTROL_TASK_QUEUE,
        args,
      },
      // A run still going when the next fires is skipped; a missed month (server down) is caught up within a day.
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
      memo: { owner: 'sluice', purpose: 'monthly invoices' },
    });
    return true;
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) return false;
    throw err;
  }
}

/** Creates the daily day-close Schedule unless it exists. Returns whether this call created it. */
export async function ensureDayCloseSchedule(client: Client): Promise<boolean> {
  const args: [DayCloseInput] = [{ day: null, tenantId: null }];
  try {
    await client.schedule.create({
      scheduleId: DAY_CLOSE_SCHEDULE_ID,
      spec: { calendars: [{ hour: 0, minute: 5, comment: 'close the previous day, 00:05 UTC' }] },
      action: {
        type: 'startWorkflow',
        workflowType: 'dayClose',
        // The Schedule appends the scheduled time: one run ID per day.
        workflowId: 'day-close-scheduled',
        taskQueue: CONTROL_TASK_QUEUE,
        args,
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
      memo: { owner: 'sluice', purpose: 'daily close of the usage ledger' },
    });
    return true;
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) return false;
    throw err;
  }
}
