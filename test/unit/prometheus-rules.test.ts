/**
 * The shipped Prometheus rules (deploy/prometheus/rules.yml) on the real `promtool` of Debian's
 * prometheus package (scripts/install-prometheus.sh): they pass `promtool check rules`, their unit
 * tests (deploy/prometheus/tests.yml) pass `promtool test rules`, and every alert has a test where
 * it fires and one where it stays quiet. The compose scrape config passes `promtool check config`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SLO_BURN_WINDOWS } from '../../domain/slo.js';

const run = promisify(execFile);
const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));

interface RuleFile { groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }> }
interface TestFile { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] | null }> }> }

/** Runs promtool; on a non-zero exit the test fails with promtool's own output. */
async function promtool(args: string[], cwd = dir): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd, maxBuffer: 16 * 1024 * 1024 });
    return stdout + stderr;
  } catch (err) {
    const e = err as { code?: string; stdout?: string; stderr?: string; message: string };
    if (e.code === 'ENOENT') throw new Error('promtool is not installed: run scripts/install-prometheus.sh (npm test runs it as pretest)');
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
}

const rules = parse(readFileSync(path.join(dir, 'rules.yml'), 'utf8')) as RuleFile;
const alerts = rules.groups.flatMap((g) => g.rules).flatMap((r) => (r.alert ? [r.alert] : []));

describe('deploy/prometheus', () => {
  it('rules.yml passes promtool check rules', async () => {
    const out = await promtool(['check', 'rules', 'rules.yml']);
    expect(out).toMatch(/SUCCESS: \d+ rules found/);
  }, 60_000);

  it('tests.yml passes promtool test rules', async () => {
    const out = await promtool(['test', 'rules', 'tests.yml']);
    expect(out).toMatch(/SUCCESS/);
  }, 600_000);

  it('has, for every alert, a test where it fires and one where it stays quiet', () => {
    const tests = (parse(readFileSync(path.join(dir, 'tests.yml'), 'utf8')) as TestFile).tests.flatMap((t) => t.alert_rule_test ?? []);
    expect(alerts.length).toBeGreaterThanOrEqual(12);
    for (const alert of alerts) {
      const cases = tests.filter((t) => t.alertname === alert);
      expect(cases.some((t) => (t.exp_alerts ?? []).length > 0), `${alert} fires in a test`).toBe(true);
      expect(cases.some((t) => (t.exp_alerts ?? []).length === 0), `${alert} stays quiet in a test`).toBe(true);
    }
    // No test names an alert that does not exist (a renamed alert would leave its tests vacuous).
    for (const t of tests) expect(alerts, t.alertname).toContain(t.alertname);
  });

  it('has multi-window burn-rate alerts, page and ticket, for both SLOs', () => {
    const byName = new Map(rules.groups.flatMap((g) => g.rules).map((r) => [r.alert ?? r.record, r.expr]));
    for (const [slo, budget] of [['request_errors', '0.001'], ['request_latency_slow', '0.01']] as const) {
      const pairs = { fast: [['1h', '5m', '14.4'], ['6h', '30m', '6']], slow: [['1d', '2h', '3'], ['3d', '6h', '1']] };
      const alert = slo === 'request_errors' ? 'Availability' : 'Latency';
      for (const [speed, windows] of Object.entries(pairs)) {
        const expr = byName.get(`Sluice${alert}BudgetBurn${speed === 'fast' ? 'Fast' : 'Slow'}`) ?? '';
        for (const [long, short, factor] of windows) {
          for (const w of [long, short]) {
            expect(expr, `${alert} ${speed} ${w}`).toContain(`sluice:${slo}:ratio_rate${w} > (${factor} * ${budget})`);
            expect(byName.has(`sluice:${slo}:ratio_rate${w}`), `recording rule for ${slo} ${w}`).toBe(true);
          }
        }
      }
    }
  });

  it('has generic burn-rate alerts, page and ticket, over every window the control worker exports', () => {
    const byName = new Map(rules.groups.flatMap((g) => g.rules).map((r) => [r.alert ?? r.record, r.expr]));
    expect(byName.get('sluice:slo_burn_rate')).toContain('sluice_slo_error_ratio');
    expect(byName.get('sluice:slo_burn_rate')).toContain('sluice_slo_objective');
    const pairs = { Fast: [['1h', '5m', '14.4'], ['6h', '30m', '6']], Slow: [['1d', '2h', '3'], ['3d', '6h', '1']] };
    const used = new Set<string>();
    for (const [speed, windows] of Object.entries(pairs)) {
      const expr = byName.get(`SluiceSloBudgetBurn${speed}`) ?? '';
      for (const [long, short, factor] of windows) {
        for (const w of [long, short] as string[]) {
          expect(expr, `${speed} ${w}`).toContain(`max without (window) (sluice:slo_burn_rate{window="${w}"}) > ${factor}`);
          used.add(w);
        }
      }
    }
    // The windows the alerts read are exactly those measured (domain/slo.ts SLO_BURN_WINDOWS).
    expect([...used].sort()).toEqual(SLO_BURN_WINDOWS.map((w) => w.label).sort());
  });

  it('prometheus.yml (the compose scrape config) passes promtool check config with the shipped rules', async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), 'sluice-prom-config-'));
    try {
      // The compose file mounts rules.yml at /etc/prometheus/rules.yml: check it beside the config.
      writeFileSync(path.join(tmp, 'prometheus.yml'), readFileSync(path.join(dir, 'prometheus.yml'), 'utf8').replace('/etc/prometheus/rules.yml', 'rules.yml'));
      copyFileSync(path.join(dir, 'rules.yml'), path.join(tmp, 'rules.yml'));
      const out = await promtool(['check', 'config', 'prometheus.yml'], tmp);
      expect(out).toMatch(/SUCCESS: 1 rule files found/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 60_000);
});
