/**
 * The billing Schedule, created idempotently when a control worker starts: on the 1st of every
 * month at 00:10 UTC it starts `billingRun` for the previous month. `temporal schedule list` shows it.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { BILLING_SCHEDULE_ID, CONTROL_TASK_QUEUE, type BillingRunInput } from '../workflows/contracts.js';

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
