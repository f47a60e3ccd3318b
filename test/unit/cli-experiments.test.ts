/** `sluice experiments …`: parsing (pure) and each command against an HTTP double of the API. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cli, parseCommand } from '../../scripts/cli/index.js';
import { experimentResults } from '../../domain/experiment-results.js';
import { startApiDouble, type ApiDouble, type Canned, type Recorded } from '../support/api-double.js';

const KEY = 'sk-test_cli_experiments_0123456789';
let api: ApiDouble;
let baseUrl: string;
let recorded: Recorded[];
let routes: Map<string, Canned>;

beforeAll(async () => {
  api = await startApiDouble(() => ({ status: 404, body: { error: { message: 'Experiment not found', type: 'not_found_error', param: null, code: 'not_found' } } }));
  ({ url: baseUrl, recorded, routes } = api);
});
afterAll(async () => {
  await api.close();
});
beforeEach(() => {
  api.reset();
});

async function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await cli(argv, { SLUICE_URL: baseUrl, SLUICE_API_KEY: KEY }, { fetch: globalThis.fetch, out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const experiment = {
  object: 'experiment', id: 'exp_1', name: 'tone', model: 'tiny', tenant_id: 'ten_1', status: 'draft', traffic_allocation: 0.5,
  control: 'a', promoted_variant: null, variants: [{ name: 'a', weight: 1, overrides: {} }, { name: 'b', weight: 1, overrides: { temperature: 0.2 } }],
};

describe('parsing', () => {
  it('builds the create body from flags', () => {
    const cmd = parseCommand(['experiments', 'create', '--name', 'tone', '--model', 'tiny', '--variants', '[{"name":"a"},{"name":"b"}]', '--draft', '--allocation', '0.5', '--control', 'a'], { SLUICE_API_KEY: KEY });
    expect(cmd).toMatchObject({ ok: true, command: { action: { kind: 'experiments.create', body: { name: 'tone', model: 'tiny', variants: [{ name: 'a' }, { name: 'b' }], status: 'draft', traffic_allocation: 0.5, control: 'a' } } } });
    const targeted = parseCommand(['experiments', 'create', '--name', 'tone', '--model', 'tiny', '--variants', '[{"name":"a"},{"name":"b"}]', '--targeting', '{"metadata":{"plan":["pro","team"]}}'], { SLUICE_API_KEY: KEY });
    expect(targeted).toMatchObject({ ok: true, command: { action: { kind: 'experiments.create', body: { targeting: { metadata: { plan: ['pro', 'team'] } } } } } });
  });

  it.each([
    [['experiments', 'create', '--name', 'x', '--model', 'm', '--variants', 'nope'], /JSON array/],
    [['experiments', 'create', '--name', 'x', '--model', 'm', '--variants', '[{"name":"a"}]'], /at least two/],
    [['experiments', 'create', '--name', 'x', '--model', 'm', '--variants', '[{},{}]', '--allocation', '2'], /0 to 1/],
    [['experiments', 'create', '--name', 'x', '--model', 'm', '--variants', '[{},{}]', '--targeting', '[1]'], /JSON object/],
    [['experiments', 'create', '--name', 'x', '--model', 'm', '--variants', '[{},{}]', '--targeting', '{x'], /JSON object/],
    [['experiments', 'promote', 'exp_1'], /--variant is required/],
  ])('refuses %j', (argv, message) => {
    const r = parseCommand(argv, { SLUICE_API_KEY: KEY });
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.error).toMatch(message);
  });
});

describe('against the API double', () => {
  it('create: POSTs the body and prints the experiment', async () => {
    routes.set('POST /v1/admin/experiments', { status: 201, body: experiment });
    const r = await run(['experiments', 'create', '--name', 'tone', '--model', 'tiny', '--variants', '[{"name":"a"},{"name":"b","overrides":{"temperature":0.2}}]', '--draft']);
    expect(r.code).toBe(0);
    expect(recorded[0]).toMatchObject({ method: 'POST', path: '/v1/admin/experiments', body: { name: 'tone', status: 'draft' } });
    expect(r.out).toMatch(/Created experiment exp_1 \(draft\)/);
    expect(r.out).toMatch(/a\*\(1\) b\(1\)/);
  });

  it('list, start and promote', async () => {
    routes.set('GET /v1/admin/experiments', { status: 200, body: { object: 'list', data: [experiment], has_more: false } });
    routes.set('POST /v1/admin/experiments/exp_1/start', { status: 200, body: { ...experiment, status: 'running' } });
    routes.set('POST /v1/admin/experiments/exp_1/promote', { status: 200, body: { ...experiment, status: 'stopped', promoted_variant: 'b' } });
    expect((await run(['experiments', 'list'])).out).toMatch(/exp_1\s+tone\s+tiny\s+ten_1\s+draft\s+0\.5/);
    expect((await run(['experiments', 'start', 'exp_1'])).out).toBe('Experiment exp_1 is running.');
    const p = await run(['experiments', 'promote', 'exp_1', '--variant', 'b']);
    expect(p.out).toMatch(/Promoted b: it is now the default for tiny \(tenant ten_1\); experiment exp_1 is stopped/);
    expect(recorded.at(-1)).toMatchObject({ method: 'POST', path: '/v1/admin/experiments/exp_1/promote', body: { variant: 'b' } });
  });

  it('results: prints SRM, counts and each metric against control; an API error exits 1', async () => {
    const sums = (name: string, exposures: number) => ({
      name, weight: 1, exposures, succeeded: exposures, failed: 0, cancelled: 0,
      costMicros: { n: exposures, sum: exposures * 10, sumSquares: exposures * 101 },
      promptTokens: { n: exposures, sum: exposures * 5, sumSquares: exposures * 26 },
      completionTokens: { n: exposures, sum: exposures * 8, sumSquares: exposures * 65 }, latencyN: 0,
    });
    const body = experimentResults({
      experiment: { id: 'exp_1', status: 'running', control: 'a', variants: [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }] },
      sums: [sums('a', 200), sums('b', 400)], feedback: [], latencies: new Map(),
    });
    routes.set('GET /v1/admin/experiments/exp_1/results', { status: 200, body });
    const r = await run(['experiments', 'results', 'exp_1']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/UNTRUSTWORTHY \(sample ratio mismatch\)/);
    expect(r.out).toMatch(/SRM: FAILED/);
    expect(r.out).toMatch(/cost_micros_per_request\s+b\s+400/);
    expect(r.out).toMatch(/holm correction across variants; always-valid msprt/);
    const missing = await run(['experiments', 'results', 'exp_2']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/Experiment not found/);
  });
});
