/**
 * The admission, fallback and compensation loop every request pipeline runs (chat and completion
 * requests in `pipeline.ts`, embeddings in `embeddings-request.ts`): admit (a batch line waits out
 * a per-minute or concurrency limit) → try the deployments in order (circuit acquired, an attempt,
 * a failure records its consumed tokens and the circuit and tries the next) → the caller settles
 * the served attempt. A failure or cancel after the reservation releases it and records the
 * outcome. The activity calls, their order and their arguments are those the pipelines' recorded
 * histories hold (docs/versioning.md).
 * Workflow-only module (imports `@temporalio/workflow`).
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  sleep,
} from '@temporalio/workflow';
import type { ControlActivities } from '../activities/index.js';
import type { Admission } from '../activities/admission.js';
import type { ConsumedTokens, DeploymentTarget, JobStatus, RequestKind } from '../contracts/chat.js';
import type { FailureDetails, FailureType } from '../contracts/failures.js';
import { CLIENT_FAULTS, PIPELINE_PROFILES as PROFILES } from '../contracts/profiles.js';
import { consumedOf, failureOf } from './failures.js';

/** Failure types that end the request instead of trying the next deployment. */
const clientFaults: readonly string[] = CLIENT_FAULTS;

/** Limits a batch line waits out instead of failing: those that free up within a minute. */
const WAITABLE_LIMITS: readonly string[] = ['rate_limit_exceeded', 'tokens_rate_limit_exceeded', 'concurrency_limit_exceeded'];

/** How long to wait before admitting again after a waitable refusal (with jitter, so lines spread out); null otherwise. */

/** The model and variant an admitted request is served as: the variant's model override, if any, else the requested model. */
export function servedAs(requested: string, assignment: Admission['assignment']): { model: string; variant: string | null } {
  return { model: assignment.overrides.model ?? requested, variant: assignment.variant };
}

/** Tokens a finished attempt spent (and its failed retries before it), from its output; null: none. */
function spentBy(out: unknown): ConsumedTokens | null {
  const o = out as { promptTokens?: unknown; completionTokens?: unknown; failedAttempts?: ConsumedTokens | null };
  const count = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : 0);
  const promptTokens = count(o.promptTokens) + count(o.failedAttempts?.promptTokens);
  const completionTokens = count(o.completionTokens) + count(o.failedAttempts?.completionTokens);
  return promptTokens + completionTokens > 0 ? { promptTokens, completionTokens } : null;
}

export function rateLimitWaitMs(err: unknown): number | null {
  const failure = failureOf(err);
  const details = failure?.details?.[0] as FailureDetails | undefined;
  if (failure?.type !== 'QuotaExceeded' || !WAITABLE_LIMITS.includes(details?.code ?? '')) return null;
  const base = Math.max(1, details?.retryAfterSeconds ?? 1) * 1000;
  return base + Math.floor(Math.random() * Math.min(base, 2000)); // seeded per workflow: replays agree
}

/** What the workflow running a pipeline learns of it as it goes, and how it runs it (all optional). */
export interface RunHooks {
  /** The request's database steps as local activities (see `PipelineHooks.localActivities`). @default false */
  localActivities?: boolean;
  /** Admission runs to its end even if the request is cancelled meanwhile (see `PipelineHooks.shieldAdmission`). @default false */
  shieldAdmission?: boolean;
  /** The request's status and current step changed (for queries). */
  onStep?: (status: JobStatus, step: string) => void;
  /** An attempt starts on this deployment's pool, with the request's final model and variant. */
  onAttempt?: (attempt: { model: string; pool: string; variant: string | null }) => void;
  /** The request ended: after its outcome is recorded. */
  onEnd?: (status: 'succeeded' | 'failed' | 'cancelled') => void;
}

/** What the loop knows once admitted, for the caller's attempt and settlement. */
export interface RunContext {
  steps: ControlActivities;
  /** The effective model (a variant's override, else the request's). */
  model: string;
  variant: string | null;
  /** Records an unbilled usage row for tokens this deployment's failed or cancelled attempts spent. */
  recordConsumed: (outcome: 'failed' | 'cancelled', deployment: DeploymentTarget, consumed: ConsumedTokens) => Promise<void>;
  /**
   * The steps that settle a served attempt (`complete`): `steps`, or, for a request whose caller
   * already has the attempt's output (`OverDeployments.answeredEarly`), the same steps retried
   * until they succeed.
   */
  settling: ControlActivities;
}

/** One request run over its deployments: who asks, and the caller's steps. */
export interface OverDeployments<P, Out, Result> {
  request: { requestId: string; tenantId: string; keyId: string; kind: RequestKind; model: string };
  hooks: RunHooks;
  /** Usage step of the request (`infer`, `embed`): unbilled rows are `<step>:<outcome>:<deployment>`. */
  usageStep: string;
  /** Unbilled rows count the completion tokens consumed (false: prompt tokens only). @default true */
  countsCompletion?: boolean;
  /**
   * The caller is answered as soon as a served attempt's output is in the history
   * (`ChatRequestInput.answeredEarly`): a served attempt is settled whatever cancel follows (a
   * cancel then is too late), in a scope no cancel reaches, with `RunContext.settling`.
   * @default false
   */
  answeredEarly?: boolean;
  /** Failure types that end the request after the circuit is recorded, instead of trying the next deployment. @default none */
  endsOn?: readonly string[];
  /** Summary fields of a failed or cancelled outcome before `variant`. @default none */
  failureSummary?: Record<string, unknown>;
  /** The admission call. */
  admit: (steps: ControlActivities) => Promise<Admission>;
  /** Checks and derives what the attempts need from the admission (a throw is compensated). */
  prepare: (admission: Admission, ctx: RunContext) => P;
  /**
   * Before any deployment is tried: a result that needs none of them (a response-cache hit,
   * settled by the caller), or null to go on. @default none (always go on)
   */
  shortcut?: (prepared: P, ctx: RunContext) => Promise<{ result: Result } | null>;
  /**
   * Several generations under the one admission, in order (a legacy completion's prompts): each
   * tried over the deployments on its own (admission's circuit serves the first; a later one
   * acquires its own), its failed or cancelled attempts recorded under `step(part)`, and settled
   * by `succeed` with its index; the request's result is the last one's. A part that no
   * deployment serves fails the request (the parts settled before it stay settled).
   * @default one part, whose usage step is `usageStep`
   */
  parts?: { count: number; step: (part: number) => string };
  /** One attempt on `deployment` (for part `part`). */
  attempt: (deployment: DeploymentTarget, prepared: P, ctx: RunContext, part: number) => Promise<Out>;
  /** Settles the served attempt (of part `part`) and returns the request's result. */
  succeed: (deployment: DeploymentTarget, out: Out, ctx: RunContext, part: number) => Promise<Result>;
}

/** The failure of a request (or part) that no deployment served. */
function noDeploymentAvailable(model: string, deployments: readonly DeploymentTarget[], lastFailure: unknown): ApplicationFailure {
  const cause = failureOf(lastFailure);
  return ApplicationFailure.create({
    type: 'NoDeploymentAvailable' satisfies FailureType,
    message: deployments.length === 0
      ? `model ${model} has no active deployment`
      : `no deployment of ${model} could serve the request${cause ? `: ${cause.message}` : ' (all circuits open)'}`,
    nonRetryable: true,
    details: [{ code: 'model_unavailable', param: null, retryAfterSeconds: 5 } satisfies FailureDetails],
  });
}

/**
 * Runs one request to its end over its deployments (see the top of this file) and returns its
 * result, or throws a non-retryable `ApplicationFailure` (or the cancellation) after releasing the
 * reservation and recording the outcome.
 */
export async function runOverDeployments<P, Out, Result>(run: OverDeployments<P, Out, Result>): Promise<Result> {
  const { request, hooks } = run;
  const steps = hooks.localActivities
    ? proxyLocalActivities<ControlActivities>(PROFILES.db)
    : proxyActivities<ControlActivities>(PROFILES.db);
  const step = hooks.onStep ?? (() => undefined);
  const parts = run.parts?.count ?? 1;
  /** The usage step of the part being served. */
  let usageStep = run.usageStep;
  /** The caller may already have a served attempt's output (`answeredEarly`). */
  const answered = run.answeredEarly === true;
  const ctx: RunContext = {
    steps,
    settling: answered
      ? (hooks.localActivities ? proxyLocalActivities<ControlActivities>(PROFILES.settleAnswered) : proxyActivities<ControlActivities>(PROFILES.settleAnswered))
      : steps,
    model: request.model,
    variant: null,
    recordConsumed: (outcome, deployment, consumed) => CancellationScope.nonCancellable(() => steps.recordConsumed({
      requestId: request.requestId, step: `${usageStep}:${outcome}:${deployment.id}`, tenantId: request.tenantId, keyId: request.keyId, kind: request.kind,
      model: ctx.model, deploymentId: deployment.id, pool: deployment.pool, variant: ctx.variant,
      promptTokens: consumed.promptTokens, completionTokens: run.countsCompletion === false ? 0 : consumed.completionTokens, latencyMs: 0,
    })),
  };
  let reserved = false;
  /** The pool of the deployment last tried: recorded on a failed request for pool SLOs. */
  let lastPool: string | null = null;
  try {
    const admit = () => run.admit(steps);
    let admission: Admission;
    for (;;) {
      try {
        admission = await (hooks.shieldAdmission ? CancellationScope.nonCancellable(admit) : admit());
        break;
      } catch (err) {
        // A batch line refused by a per-minute or concurrency limit waits its turn (the batch's
        // window slot stays taken: the batch slows to the tenant's limits) until its batch
        // expires or is cancelled; a sync or async caller gets the 429 and decides.
        const wait = request.kind === 'batch' ? rateLimitWaitMs(err) : null;
        if (wait === null) throw err;
        step('queued', 'rate-limited');
        await sleep(wait);
      }
    }
    reserved = true;
    /** `acquired`: index of the deployment whose circuit admission acquired (-1: all were open). */
    const { assignment, deployments, acquired } = admission;
    ({ model: ctx.model, variant: ctx.variant } = servedAs(request.model, assignment));
    const prepared = run.prepare(admission, ctx);
    const served = run.shortcut ? await run.shortcut(prepared, ctx) : null;
    if (served !== null) {
      step('succeeded', 'done');
      hooks.onEnd?.('succeeded');
      return served.result;
    }

    for (let part = 0; ; part += 1) {
      if (run.parts) usageStep = run.parts.step(part);
      let lastFailure: unknown = null;
      let served = false;
      // Admission tried the circuits up to `acquired` (all of them when -1), for the first part only.
      const held = part === 0 ? acquired : -1;
      const firstToTry = part > 0 ? 0 : acquired === -1 ? deployments.length : acquired;
      for (const [i, deployment] of deployments.entries()) {
        if (i < firstToTry) continue;
        if (i !== held && !(await steps.acquireCircuit({ deploymentId: deployment.id }))) continue;
        step('running', `${usageStep}:${deployment.id}`);
        lastPool = deployment.pool;
        hooks.onAttempt?.({ model: ctx.model, pool: deployment.pool, variant: ctx.variant });
        let out: Out;
        try {
          out = await run.attempt(deployment, prepared, ctx, part);
        } catch (err) {
          const consumed = consumedOf(err);
          if (consumed) await ctx.recordConsumed(isCancellation(err) ? 'cancelled' : 'failed', deployment, consumed);
          if (isCancellation(err)) throw err;
          const failure = failureOf(err);
          if (failure && clientFaults.includes(failure.type ?? '')) throw err;
          await steps.recordCircuit({ deploymentId: deployment.id, ok: false });
          if (run.endsOn?.includes(failure?.type ?? '')) throw err;
          lastFailure = err;
          continue;
        }
        // The attempt finished while the request was being cancelled (the cancellation reached the
        // worker after its last token, within its heartbeat throttle): what it generated is recorded
        // as a cancelled attempt's spending, unbilled, as if stopped mid-way; nothing is settled.
        // Not so when the caller is answered from the history: it may have the output already, so
        // the attempt is settled, out of any cancel's reach (`answeredEarly`).
        if (!answered && CancellationScope.current().consideredCancelled && patched('record-completion-of-cancelled-request')) {
          const spent = spentBy(out);
          if (spent) await ctx.recordConsumed('cancelled', deployment, spent);
          throw new CancelledFailure('the request was cancelled as its inference finished');
        }
        const settle = () => run.succeed(deployment, out, ctx, part);
        const result = answered ? await CancellationScope.nonCancellable(settle) : await settle();
        if (part < parts - 1) {
          served = true;
          break;
        }
        step('succeeded', 'done');
        hooks.onEnd?.('succeeded');
        return result;
      }
      if (!served) throw noDeploymentAvailable(ctx.model, deployments, lastFailure);
    }
  } catch (err) {
    const cancelled = isCancellation(err);
    const failure = failureOf(err);
    const type = cancelled ? 'Cancelled' : (failure?.type ?? 'InternalError');
    const details = (failure?.details?.[0] ?? null) as FailureDetails | null;
    await CancellationScope.nonCancellable(async () => {
      if (reserved) await steps.releaseQuota({ requestId: request.requestId });
      await steps.recordOutcome({
        requestId: request.requestId, tenantId: request.tenantId, keyId: request.keyId, kind: request.kind, model: ctx.model,
        status: cancelled ? 'cancelled' : 'failed', result: null,
        error: { type, message: cancelled ? 'cancelled' : (failure?.message ?? 'internal error'), code: details?.code ?? null },
        summary: { ...run.failureSummary, variant: ctx.variant, ...(lastPool !== null ? { pool: lastPool } : {}) },
      });
      step(cancelled ? 'cancelled' : 'failed', 'done');
      hooks.onEnd?.(cancelled ? 'cancelled' : 'failed');
    });
    if (cancelled) throw err;
    throw ApplicationFailure.create({
      type,
      message: failure?.message ?? 'internal error',
      nonRetryable: true,
      details: [details ?? { code: null, param: null, retryAfterSeconds: null }],
    });
  }
}
