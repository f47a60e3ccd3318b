/**
 * SLOs and SLAs as pure rules: what an objective is (kind, scope, target, window, threshold) and
 * how a definition from outside is validated; which request outcomes count for and against
 * availability; and the arithmetic of attainment, error budget and SLA credits
 * (`domain/slo-math.ts`). No I/O: the API validates with it, the repository passes its sets to SQL.
 *
 * Targets and tier thresholds are held as integers in parts per million (0.999 = 999000), so
 * "attainment below the threshold" is an exact integer comparison, never a float one.
 */
import { FAILURES, type FailureType } from '../contracts/failures.js';
import { InvalidRequestError } from './invalid-request.js';
import { isObject } from './is-object.js';
import { periodOf, periodRange } from './billing-calendar.js';

/** What an objective measures. */
export const SLO_KINDS = ['availability', 'latency_p95', 'latency_p99', 'ttft_p95', 'ttft_p99', 'batch_window'] as const;
export type SloKind = (typeof SLO_KINDS)[number];

/** Kinds measured against a bound in ms (`threshold_ms`): the end-to-end latency, or a stream's time to first token. */
export const THRESHOLD_KINDS: readonly SloKind[] = ['latency_p95', 'latency_p99', 'ttft_p95', 'ttft_p99'];

/** The percentile a latency kind reports (`percentile_cont` in SQL). */
export function percentileOf(kind: SloKind): number | null {
  if (kind.endsWith('_p95')) return 0.95;
  if (kind.endsWith('_p99')) return 0.99;
  return null;
}

/** What an objective is scoped to: the requests of one model, one pool, or the tenants on one plan. */
export const SLO_SCOPE_TYPES = ['model', 'pool', 'plan'] as const;
export type SloScopeType = (typeof SLO_SCOPE_TYPES)[number];

/** `30d`: the 30 days before now, rolling; `calendar_month`: the current UTC month so far (the SLA window). */
export const SLO_WINDOWS = ['30d', 'calendar_month'] as const;
export type SloWindow = (typeof SLO_WINDOWS)[number];

/**
 * The windows the control worker measures every objective's error ratio over, for the generic
 * multi-window multi-burn-rate alerts of deploy/prometheus/rules.yml (Google SRE workbook: 14.4×
 * over 1h and 5m, 6× over 6h and 30m page; 3× over 1d and 2h, 1× over 3d and 6h ticket).
 */
export const SLO_BURN_WINDOWS: ReadonlyArray<{ label: string; ms: number }> = Object.freeze([
  { label: '5m', ms: 5 * 60_000 },
  { label: '30m', ms: 30 * 60_000 },
  { label: '1h', ms: 3_600_000 },
  { label: '2h', ms: 2 * 3_600_000 },
  { label: '6h', ms: 6 * 3_600_000 },
  { label: '1d', ms: 86_400_000 },
  { label: '3d', ms: 3 * 86_400_000 },
]);

/** Parts per million: 1 = 1_000_000. */
export const PPM = 1_000_000;

/**
 * Failure types that are the client's own doing (its 4xx: a bad request, a key or model it may
 * not use, its own rate limit or budget): a request failing with one of these is left out of
 * availability, neither good nor bad. Every other failure (5xx: `NoDeploymentAvailable`,
 * `StreamInterrupted`, `InternalError`, or any type outside the table) counts against us.
 * Cancelled requests (the client's choice) are left out too.
 */
export const CLIENT_FAULT_FAILURES: readonly FailureType[] = (Object.keys(FAILURES) as FailureType[])
  .filter((t) => t !== 'Cancelled' && FAILURES[t].status < 500);

/** Whether a failed request of this type counts against availability (see {@link CLIENT_FAULT_FAILURES}). */
export function countsAgainstUs(failureType: string | null): boolean {
  return !(CLIENT_FAULT_FAILURES as readonly string[]).includes(failureType ?? '');
}

/** A validated objective, as stored. */
export interface SloDefinition {
  name: string;
  kind: SloKind;
  scopeType: SloScopeType;
  scopeValue: string;
  targetPpm: number;
  window: SloWindow;
  thresholdMs: number | null;
}

/** An SLA credit tier: attainment strictly below `belowPpm` earns `creditBps` of the period's charges. */
export interface SlaTier {
  belowPpm: number;
  creditBps: number;
}

/** A plan's SLA: the availability it promises over each calendar month, and its credit tiers. */
export interface PlanSla {
  targetPpm: number;
  /** Ordered from the highest threshold down; each lower threshold earns a larger credit. */
  tiers: SlaTier[];
}

const bad = (message: string, param: string) => new InvalidRequestError(message, param, 'invalid_value');

/** A share in (0, 1) with at most 6 decimals (a target, a tier threshold) → parts per million. */
export function ratioToPpm(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v >= 1) throw bad(`'${name}' must be a number strictly between 0 and 1`, name);
  const ppm = Math.round(v * PPM);
  if (Math.abs(ppm / PPM - v) > 1e-12 || ppm <= 0 || ppm >= PPM) throw bad(`'${name}' may have at most 6 decimals`, name);
  return ppm;
}

/** A percentage 0–100 with at most 2 decimals → basis points. */
export function percentToBps(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 100) throw bad(`'${name}' must be a percentage from 0 to 100`, name);
  const bps = Math.round(v * 100);
  if (Math.abs(bps / 100 - v) > 1e-9) throw bad(`'${name}' may have at most 2 decimals`, name);
  return bps;
}

function oneOf<T extends string>(v: unknown, values: readonly T[], name: string): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw bad(`'${name}' must be one of ${values.join(', ')}`, name);
  return v as T;
}

function text(v: unknown, name: string, max: number): string {
  if (typeof v !== 'string' || v.trim() === '' || v.length > max) throw bad(`'${name}' must be a non-empty string of at most ${max} characters`, name);
  return v;
}

function threshold(v: unknown, kind: SloKind): number | null {
  if (THRESHOLD_KINDS.includes(kind)) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 86_400_000) {
      throw bad(`'threshold_ms' must be an integer from 1 to 86400000 for kind ${kind}`, 'threshold_ms');
    }
    return v;
  }
  if (v !== undefined && v !== null) throw bad(`'threshold_ms' applies to latency and TTFT kinds only, not ${kind}`, 'threshold_ms');
  return null;
}

const SLO_FIELDS = ['name', 'kind', 'scope', 'target', 'window', 'threshold_ms'];

function refuseUnknown(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(body)) if (!allowed.includes(k)) throw new InvalidRequestError(`Unknown field '${k}'`, k, 'unknown_parameter');
}

function scopeOf(v: unknown): { scopeType: SloScopeType; scopeValue: string } {
  if (!isObject(v)) throw bad("'scope' must be an object { type: model | pool | plan, value }", 'scope');
  refuseUnknown(v, ['type', 'value']);
  return { scopeType: oneOf(v.type, SLO_SCOPE_TYPES, 'scope.type'), scopeValue: text(v.value, 'scope.value', 200) };
}

/** Validates a new objective (`POST /v1/admin/slos`). Every field but `threshold_ms` and `window` is required. */
export function parseSloDefinition(body: unknown): SloDefinition {
  if (!isObject(body)) throw bad('The body must be a JSON object', 'body');
  refuseUnknown(body, SLO_FIELDS);
  const kind = oneOf(body.kind, SLO_KINDS, 'kind');
  const scope = scopeOf(body.scope);
  if (kind === 'batch_window' && scope.scopeType === 'pool') throw bad('A batch_window objective is scoped to a model or a plan, not a pool', 'scope.type');
  return {
    name: text(body.name, 'name', 200),
    kind,
    ...scope,
    targetPpm: ratioToPpm(body.target, 'target'),
    window: body.window === undefined ? '30d' : oneOf(body.window, SLO_WINDOWS, 'window'),
    thresholdMs: threshold(body.threshold_ms, kind),
  };
}

/**
 * Applies a change (`PATCH /v1/admin/slos/{id}`: any of `name`, `target`, `window`, `threshold_ms`)
 * to a stored objective. Kind and scope are what the objective is: changing them is a new objective.
 */
export function patchSloDefinition(current: SloDefinition, body: unknown): SloDefinition {
  if (!isObject(body)) throw bad('The body must be a JSON object', 'body');
  for (const k of ['kind', 'scope']) {
    if (k in body) throw new InvalidRequestError(`'${k}' cannot be changed; create a new objective`, k, 'immutable_field');
  }
  refuseUnknown(body, ['name', 'target', 'window', 'threshold_ms']);
  return {
    ...current,
    ...(body.name !== undefined ? { name: text(body.name, 'name', 200) } : {}),
    ...(body.target !== undefined ? { targetPpm: ratioToPpm(body.target, 'target') } : {}),
    ...(body.window !== undefined ? { window: oneOf(body.window, SLO_WINDOWS, 'window') } : {}),
    ...(body.threshold_ms !== undefined ? { thresholdMs: threshold(body.threshold_ms, current.kind) } : {}),
  };
}

/**
 * Validates a plan's SLA (`PUT /v1/admin/plans/{plan}/sla`): `{ target, credits: [{ below,
 * credit_percent }] }`. Tiers are ordered from the highest threshold down, each threshold at most
 * the target and strictly below the one before, each credit larger than the one before (a worse
 * month never earns less); 1 to 10 tiers.
 */
export function parsePlanSla(body: unknown): PlanSla {
  if (!isObject(body)) throw bad('The body must be a JSON object', 'body');
  refuseUnknown(body, ['target', 'credits']);
  const targetPpm = ratioToPpm(body.target, 'target');
  if (!Array.isArray(body.credits) || body.credits.length < 1 || body.credits.length > 10) throw bad("'credits' must be a list of 1 to 10 tiers", 'credits');
  const tiers = body.credits.map((t: unknown, i): SlaTier => {
    if (!isObject(t)) throw bad(`'credits[${i}]' must be an object { below, credit_percent }`, `credits[${i}]`);
    refuseUnknown(t, ['below', 'credit_percent']);
    const tier = { belowPpm: ratioToPpm(t.below, `credits[${i}].below`), creditBps: percentToBps(t.credit_percent, `credits[${i}].credit_percent`) };
    if (tier.creditBps === 0) throw bad(`'credits[${i}].credit_percent' must be above 0`, `credits[${i}].credit_percent`);
    return tier;
  });
  tiers.forEach((t, i) => {
    if (t.belowPpm > targetPpm) throw bad(`'credits[${i}].below' must be at most the target`, `credits[${i}].below`);
    const prev = tiers[i - 1];
    if (prev && !(t.belowPpm < prev.belowPpm)) throw bad("'credits' must be ordered from the highest threshold down, each strictly lower", `credits[${i}].below`);
    if (prev && !(t.creditBps > prev.creditBps)) throw bad("each lower tier's 'credit_percent' must be larger than the one before", `credits[${i}].credit_percent`);
  });
  return { targetPpm, tiers };
}

/** A ppm value as the share clients wrote (999000 → 0.999). */
export function ppmToRatio(ppm: number): number {
  return ppm / PPM;
}

/** The time range an objective's window covers at `now`: the 30 days before it, or its UTC month so far. */
export function windowRange(window: SloWindow, now: Date): { start: Date; end: Date } {
  if (window === '30d') return { start: new Date(now.getTime() - 30 * 86_400_000), end: now };
  return { start: periodRange(periodOf(now)).start, end: now };
}

/** An SLO named by ID in the seed file (`SLUICE_SLOS_FILE`). */
export interface SeededSlo extends SloDefinition {
  id: string;
}

/** Seeded SLO IDs: `slo_` and 1–60 of `[a-z0-9_-]` (generated IDs are `slo_` + time + hex: never clash in practice). */
const SEED_ID = /^slo_[a-z0-9_-]{1,60}$/;

/**
 * Validates the seed file's parsed JSON: `{ "slos": [...] }`, each entry a definition as
 * `POST /v1/admin/slos` takes it plus an `id`; IDs unique. A problem names the entry and field
 * (`slos[2].target`).
 */
export function parseSloSeed(json: unknown): SeededSlo[] {
  if (!isObject(json) || !Array.isArray(json.slos)) throw bad('The SLO file must be an object { "slos": [...] }', 'slos');
  refuseUnknown(json, ['slos']);
  const seen = new Set<string>();
  return json.slos.map((entry: unknown, i): SeededSlo => {
    const at = (err: unknown) => err instanceof InvalidRequestError ? new InvalidRequestError(`slos[${i}]: ${err.message}`, `slos[${i}].${err.param ?? ''}`, err.code) : err;
    if (!isObject(entry)) throw bad(`'slos[${i}]' must be an object`, `slos[${i}]`);
    const { id, ...rest } = entry;
    if (typeof id !== 'string' || !SEED_ID.test(id)) throw bad(`'slos[${i}].id' must be slo_ followed by 1 to 60 of [a-z0-9_-]`, `slos[${i}].id`);
    if (seen.has(id)) throw bad(`'slos[${i}].id' ${id} is given twice`, `slos[${i}].id`);
    seen.add(id);
    try {
      return { id, ...parseSloDefinition(rest) };
    } catch (err) {
      throw at(err);
    }
  });
}
