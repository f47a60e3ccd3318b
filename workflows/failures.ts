/**
 * What an activity or child workflow failed with, seen from the workflow that awaited it: the SDK
 * wraps the callee's own failure in an `ActivityFailure` or a `ChildWorkflowFailure`; these
 * helpers unwrap it in one place. Pure over `@temporalio/common`: safe in the workflow sandbox.
 */
import { ActivityFailure, ApplicationFailure, CancelledFailure, ChildWorkflowFailure } from '@temporalio/common';
import type { ConsumedTokens } from '../contracts/chat.js';
import type { FailureDetails } from '../contracts/failures.js';

/** The callee's own failure behind an `ActivityFailure` or `ChildWorkflowFailure`; anything else as it is. */
export function causeOf(err: unknown): unknown {
  return err instanceof ActivityFailure || err instanceof ChildWorkflowFailure ? err.cause : err;
}

/** The `ApplicationFailure` an activity or child workflow failed with (or `err` itself, if one); null otherwise. */
export function failureOf(err: unknown): ApplicationFailure | null {
  const cause = causeOf(err);
  return cause instanceof ApplicationFailure ? cause : null;
}

/**
 * What a workflow rethrows for a callee's failure: the callee's own `ApplicationFailure` type,
 * message and details, non-retryable, so `temporal workflow describe` and the API show the finding
 * (ReconciliationMismatch, PeriodOpen…), not "Activity task failed"; anything else as it is.
 */
export function runFailure(err: unknown): unknown {
  const cause = failureOf(err);
  return cause ? ApplicationFailure.create({ type: cause.type ?? 'InternalError', message: cause.message, nonRetryable: true, details: cause.details ?? [] }) : err;
}

/**
 * Tokens a failed or cancelled infer attempt reported spending (`consumed` in its failure's
 * details; see activities/inference.ts), or null when it spent none.
 */
export function consumedOf(err: unknown): ConsumedTokens | null {
  const cause = causeOf(err);
  const details = cause instanceof ApplicationFailure || cause instanceof CancelledFailure ? cause.details : undefined;
  const consumed = (details?.[0] as FailureDetails | undefined)?.consumed;
  return consumed && consumed.promptTokens + consumed.completionTokens > 0 ? consumed : null;
}
