/** Non-retryable request failures, typed with the closed set in `contracts/`. */
import { ApplicationFailure } from '@temporalio/common';
import type { FailureDetails, FailureType } from '../contracts/failures.js';

export function requestFailure(type: FailureType, message: string, details: Partial<FailureDetails> = {}): ApplicationFailure {
  const full: FailureDetails = {
    code: details.code ?? null, param: details.param ?? null, retryAfterSeconds: details.retryAfterSeconds ?? null,
    ...(details.consumed ? { consumed: details.consumed } : {}),
  };
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: [full] });
}
