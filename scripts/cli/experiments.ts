/** `sluice experiments list|create|start|pause|resume|stop|results|promote`. */
import { requiredStr, str, timeOpt, UsageError, type CommandSpec } from './args.js';
import { formatTable, type Out } from './format.js';
import type { Handlers, ListJson } from './http.js';

export interface ExperimentCreateBody {
  name: string;
  model: string;
  variants: unknown[];
  status?: 'draft';
  traffic_allocation?: number;
  control?: string;
  tenant_id?: string;
  starts_at?: string;
  ends_at?: string;
  targeting?: Record<string, unknown>;
}

type LifecycleVerb = 'start' | 'pause' | 'resume' | 'stop';

export type ExperimentAction =
  | { kind: 'experiments.list' }
  | { kind: 'experiments.create'; body: ExperimentCreateBody }
  | { kind: 'experiments.lifecycle'; id: string; verb: LifecycleVerb }
  | { kind: 'experiments.results'; id: string }
  | { kind: 'experiments.promote'; id: string; variant: string };

const LIFECYCLE: ReadonlyArray<[LifecycleVerb, string]> = [
  ['start', 'start a draft experiment (it assigns from now on, within its window)'],
  ['pause', 'pause a running experiment (it assigns nobody until resumed)'],
  ['resume', 'resume a paused experiment'],
  ['stop', 'stop an experiment for good (nothing is promoted)'],
];

export const experimentCommands: readonly CommandSpec<ExperimentAction>[] = [
  {
    path: ['experiments', 'list'],
    synopsis: '',
    summary: 'list experiments with their status, allocation and variants',
    options: {},
    args: [],
    build: () => ({ kind: 'experiments.list' }),
  },
  {
    path: ['experiments', 'create'],
    synopsis: "--name N --model M --variants JSON [--draft] [--allocation F] [--control V] [--tenant T] [--starts-at ISO] [--ends-at ISO] [--targeting JSON]",
    summary: 'create an experiment (running at once unless --draft)',
    options: {
      name: { type: 'string', arg: 'N', help: 'experiment name' },
      model: { type: 'string', arg: 'M', help: 'the model whose requests it takes' },
      variants: { type: 'string', arg: 'JSON', help: `variants as the API takes them, e.g. '[{"name":"a"},{"name":"b","overrides":{"temperature":0.2}}]'` },
      draft: { type: 'boolean', help: 'create it as a draft (start it with `experiments start`)' },
      allocation: { type: 'string', arg: 'F', help: 'share of eligible requests that enter, 0-1 (default 1)' },
      control: { type: 'string', arg: 'V', help: 'the control variant (default: the first by name)' },
      tenant: { type: 'string', arg: 'T', help: 'the tenant it applies to (super admin; default: global)' },
      'starts-at': { type: 'string', arg: 'ISO', help: 'assign from this time on' },
      'ends-at': { type: 'string', arg: 'ISO', help: 'assign until this time' },
      targeting: { type: 'string', arg: 'JSON', help: `who enters, as the API takes it, e.g. '{"metadata":{"plan":["pro","team"]},"key_ids":["key_…"]}'` },
    },
    args: [],
    build(v) {
      let variants: unknown;
      try {
        variants = JSON.parse(requiredStr(v, 'variants'));
      } catch (err) {
        if (err instanceof UsageError) throw err;
        throw new UsageError('--variants must be a JSON array');
      }
      if (!Array.isArray(variants) || variants.length < 2) throw new UsageError('--variants must be a JSON array of at least two variants');
      const body: ExperimentCreateBody = { name: requiredStr(v, 'name'), model: requiredStr(v, 'model'), variants };
      if (v.draft === true) body.status = 'draft';
      const allocation = str(v, 'allocation');
      if (allocation !== undefined) {
        const f = Number(allocation);
        if (allocation.trim() === '' || !Number.isFinite(f) || f < 0 || f > 1) throw new UsageError('--allocation must be a number from 0 to 1');
        body.traffic_allocation = f;
      }
      const control = str(v, 'control');
      if (control !== undefined) body.control = control;
      const tenant = str(v, 'tenant');
      if (tenant !== undefined) body.tenant_id = tenant;
      const startsAt = timeOpt(v, 'starts-at');
      if (startsAt !== undefined) body.starts_at = startsAt;
      const endsAt = timeOpt(v, 'ends-at');
      if (endsAt !== undefined) body.ends_at = endsAt;
      const targeting = str(v, 'targeting');
      if (targeting !== undefined) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(targeting);
        } catch {
          throw new UsageError('--targeting must be a JSON object');
        }
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('--targeting must be a JSON object');
        body.targeting = parsed as Record<string, unknown>;
      }
      return { kind: 'experiments.create', body };
    },
  },
  ...LIFECYCLE.map(([verb, summary]): CommandSpec<ExperimentAction> => ({
    path: ['experiments', verb],
    synopsis: 'EXPERIMENT_ID',
    summary,
    options: {},
    args: ['EXPERIMENT_ID'],
    build: (_v, [id]) => ({ kind: 'experiments.lifecycle', id: id as string, verb }),
  })),
  {
    path: ['experiments', 'results'],
    synopsis: 'EXPERIMENT_ID',
    summary: 'per-variant results: exposures, errors, latency, tokens, cost, feedback, each against control; SRM check',
    options: {},
    args: ['EXPERIMENT_ID'],
    build: (_v, [id]) => ({ kind: 'experiments.results', id: id as string }),
  },
  {
    path: ['experiments', 'promote'],
    synopsis: 'EXPERIMENT_ID --variant V',
    summary: "make a variant the model's default and stop the experiment (audited)",
    options: { variant: { type: 'string', arg: 'V', help: 'the variant to promote' } },
    args: ['EXPERIMENT_ID'],
    build: (v, [id]) => ({ kind: 'experiments.promote', id: id as string, variant: requiredStr(v, 'variant') }),
  },
];

interface ExperimentJson {
  id: string;
  name: string;
  model: string;
  tenant_id: string | null;
  status: string;
  traffic_allocation: number;
  control: string;
  promoted_variant: string | null;
  variants: Array<{ name: string; weight: number }>;
}

interface MetricJson {
  kind: string;
  n: number;
  estimate: number | null;
  ci: [number, number] | null;
  vs_control: { difference: number | null; ci: [number, number] | null; p_value_adjusted: number | null; sequential: { p_value: number } | null; significant: boolean; underpowered: boolean } | null;
}

interface ResultsJson {
  experiment_id: string;
  status: string;
  control: string;
  trustworthy: boolean;
  srm: { passed: boolean; p_value: number | null; observed: Record<string, number>; expected: Record<string, number> | null };
  methods: { multiple_comparisons: string; sequential: { method: string } };
  variants: Array<{ name: string; exposures: number; completions: number; errors: number; metrics: Record<string, MetricJson> }>;
}

function printExperiments(rows: readonly ExperimentJson[], out: Out): void {
  if (rows.length === 0) {
    out('No experiments.');
    return;
  }
  const table = [['ID', 'NAME', 'MODEL', 'TENANT', 'STATUS', 'ALLOCATION', 'VARIANTS (weight)', 'PROMOTED']];
  for (const e of rows) {
    table.push([
      e.id, e.name, e.model, e.tenant_id ?? '(global)', e.status, String(e.traffic_allocation),
      e.variants.map((v) => `${v.name}${v.name === e.control ? '*' : ''}(${v.weight})`).join(' '), e.promoted_variant ?? '-',
    ]);
  }
  out(formatTable(table).join('\n'));
}

const num = (x: number | null | undefined, digits = 4) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : Number(x.toPrecision(digits)).toString());
const range = (ci: [number, number] | null) => (ci === null ? '' : ` [${num(ci[0])}, ${num(ci[1])}]`);

function printResults(r: ResultsJson, out: Out): void {
  out(`Experiment ${r.experiment_id} (${r.status}), control ${r.control}: ${r.trustworthy ? 'trustworthy' : 'UNTRUSTWORTHY (sample ratio mismatch)'}`);
  out(`SRM: ${r.srm.passed ? 'passed' : 'FAILED'} (p = ${num(r.srm.p_value)}; observed ${Object.entries(r.srm.observed).map(([k, v]) => `${k}=${v}`).join(' ')})`);
  out(formatTable([['VARIANT', 'EXPOSURES', 'COMPLETIONS', 'ERRORS'], ...r.variants.map((v) => [v.name, String(v.exposures), String(v.completions), String(v.errors)])]).join('\n'));
  const metrics = [...new Set(r.variants.flatMap((v) => Object.keys(v.metrics)))];
  const rows = [['METRIC', 'VARIANT', 'N', 'ESTIMATE [95% CI]', 'VS CONTROL [95% CI]', 'P (HOLM)', 'P (MSPRT)', 'FLAGS']];
  for (const m of metrics) {
    for (const v of r.variants) {
      const x = v.metrics[m];
      if (!x) continue;
      const c = x.vs_control;
      const flags = c === null ? (v.name === r.control ? 'control' : '') : [c.significant ? 'significant' : '', c.underpowered ? 'underpowered' : ''].filter(Boolean).join(',');
      rows.push([m, v.name, String(x.n), `${num(x.estimate)}${range(x.ci)}`, c ? `${num(c.difference)}${range(c.ci)}` : '-', num(c?.p_value_adjusted), num(c?.sequential?.p_value), flags]);
    }
  }
  out(formatTable(rows).join('\n'));
  out(`Methods: ${r.methods.multiple_comparisons} correction across variants; always-valid ${r.methods.sequential.method}.`);
}

export const experimentHandlers: Handlers<ExperimentAction> = {
  'experiments.list': {
    request: () => ({ method: 'GET', path: '/v1/admin/experiments' }),
    render(body, _a, { out }) {
      printExperiments((body as ListJson<ExperimentJson>).data, out);
    },
  },
  'experiments.create': {
    request: (a) => ({ method: 'POST', path: '/v1/admin/experiments', body: a.body }),
    render(body, _a, { out }) {
      const e = body as ExperimentJson;
      out(`Created experiment ${e.id} (${e.status}).`);
      printExperiments([e], out);
    },
  },
  'experiments.lifecycle': {
    request: (a) => ({ method: 'POST', path: `/v1/admin/experiments/${encodeURIComponent(a.id)}/${a.verb}` }),
    render(body, _a, { out }) {
      const e = body as ExperimentJson;
      out(`Experiment ${e.id} is ${e.status}.`);
    },
  },
  'experiments.results': {
    request: (a) => ({ method: 'GET', path: `/v1/admin/experiments/${encodeURIComponent(a.id)}/results` }),
    render(body, _a, { out }) {
      printResults(body as ResultsJson, out);
    },
  },
  'experiments.promote': {
    request: (a) => ({ method: 'POST', path: `/v1/admin/experiments/${encodeURIComponent(a.id)}/promote`, body: { variant: a.variant } }),
    render(body, _a, { out }) {
      const e = body as ExperimentJson;
      out(`Promoted ${e.promoted_variant ?? '?'}: it is now the default for ${e.model}${e.tenant_id ? ` (tenant ${e.tenant_id})` : ''}; experiment ${e.id} is ${e.status}.`);
    },
  },
};
