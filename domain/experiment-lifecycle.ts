/**
 * An experiment's lifecycle and who enters it: pure rules the API (transitions) and the
 * assignment step (eligibility) share.
 *
 * `draft → running ⇄ paused → stopped` (`draft → stopped` too); `stopped` is final. A running
 * experiment assigns only inside its window (`starts_at` ≤ now < `ends_at`, each optional); a
 * request it would take enters only if it is targeted (the experiment's tenant, its keys and
 * metadata pairs, each optional) and its subject falls inside `traffic_allocation` (a sticky
 * hash, independent of the variant's). A request that does not enter gets the model's default
 * and is not counted (no exposure).
 */
import { createHash } from 'node:crypto';
import { metadataMatches, type MetadataRule } from './experiment-targeting.js';

export const EXPERIMENT_STATUSES = ['draft', 'running', 'paused', 'stopped'] as const;
export type ExperimentStatus = (typeof EXPERIMENT_STATUSES)[number];

/** The lifecycle actions of `POST /v1/admin/experiments/{id}/{action}`. */
export const LIFECYCLE_ACTIONS = ['start', 'pause', 'resume', 'stop'] as const;
export type LifecycleAction = (typeof LIFECYCLE_ACTIONS)[number];

const TRANSITIONS: Record<LifecycleAction, { from: readonly ExperimentStatus[]; to: ExperimentStatus }> = {
  start: { from: ['draft'], to: 'running' },
  pause: { from: ['running'], to: 'paused' },
  resume: { from: ['paused'], to: 'running' },
  stop: { from: ['draft', 'running', 'paused'], to: 'stopped' },
};

/** The statuses `action` may start from, and the one it leads to. */
export function transitionOf(action: LifecycleAction): { from: readonly ExperimentStatus[]; to: ExperimentStatus } {
  return TRANSITIONS[action];
}

/** Promotion (which also stops) is allowed from any status but `stopped` and `draft`: a variant must have run. */
export const PROMOTABLE_FROM: readonly ExperimentStatus[] = ['running', 'paused'];

/** What eligibility needs of an experiment. */
export interface EligibilityRules {
  id: string;
  status: ExperimentStatus;
  startsAt: Date | null;
  endsAt: Date | null;
  trafficAllocation: number;
  targetKeyIds: readonly string[] | null;
  /** `targeting.metadata` (domain/experiment-targeting.ts); null: every request. */
  targetMetadata: MetadataRule | null;
}

/** What eligibility needs of a request. */
export interface EligibilityRequest {
  keyId: string;
  subject: string;
  metadata: Readonly<Record<string, string>> | null;
  now: Date;
}

export type Eligibility = 'enter' | 'not_running' | 'outside_window' | 'not_targeted' | 'not_allocated';

/**
 * A subject's sticky position in [0, 1) for allocation: SHA-256 of a domain-separated key, so it
 * is independent of the variant bucket (`assignVariant`), and raising the allocation only adds
 * subjects (none changes side).
 */
export function allocationPosition(experimentId: string, subject: string): number {
  const digest = createHash('sha256').update(`allocation\u0000${experimentId}\u0000${subject}`).digest();
  return Number(digest.readBigUInt64BE(0) >> 11n) / 2 ** 53;
}

/** Whether a request enters the experiment, or why not (see the top of this file). */
export function eligibility(exp: EligibilityRules, req: EligibilityRequest): Eligibility {
  if (exp.status !== 'running') return 'not_running';
  if ((exp.startsAt !== null && req.now < exp.startsAt) || (exp.endsAt !== null && req.now >= exp.endsAt)) return 'outside_window';
  if (exp.targetKeyIds !== null && !exp.targetKeyIds.includes(req.keyId)) return 'not_targeted';
  if (exp.targetMetadata !== null && !metadataMatches(exp.targetMetadata, req.metadata)) return 'not_targeted';
  if (!(allocationPosition(exp.id, req.subject) < exp.trafficAllocation)) return 'not_allocated';
  return 'enter';
}
