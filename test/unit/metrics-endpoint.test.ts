/**
 * Metrics carry tenant IDs: the public API port serves `/metrics` only with the metrics token
 * (and not at all without one), while the metrics listener serves them (behind the token when set).
 * The app is built over stand-ins for Temporal and the database: these routes touch neither.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { createApp } from '../../api/app.js';
import type { Db } from '../../db/database.js';
import { createLogger } from '../../runtime/logger.js';
import { createMetrics } from '../../runtime/metrics.js';
import { metricsAuthorized, startMetricsServer } from '../../runtime/metrics-server.js';

const TOKEN = 'metrics-token-0123456789abcdef';
const TENANT = 'ten_metricsprobe';
const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

function metricsWithTenant() {
  const metrics = createMetrics();
  metrics.chatRequests.inc({ model: 'm', status: '200', tenant: TENANT });
  return metrics;
}

async function apiUrl(metricsToken: string | null, metrics = metricsWithTenant()): Promise<string> {
  const app = createApp({
    temporal: {} as Client, db: {} as Db, metrics, log: createLogger('silent'),
    config: { maxBodyBytes: 1024, namespace: 'default', pools: [], eagerStart: false, metricsToken },
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  stops.push(() => new Promise((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('/metrics on the API port', () => {
  it('is not served without a metrics token configured, and lists no tenant', async () => {
    const res = await fetch(`${await apiUrl(null)}/metrics`);
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain(TENANT);
  });

  it('refuses a caller without the token or with a wrong one, and serves the token holder', async () => {
    const url = await apiUrl(TOKEN);
    const attempts: Array<Record<string, string>> = [{}, { Authorization: 'Bearer wrong-token-0123456789' }, { Authorization: TOKEN }];
    for (const headers of attempts) {
      const res = await fetch(`${url}/metrics`, { headers });
      expect(res.status).toBe(401);
      const body = await res.text();
      expect(body).not.toContain(TENANT);
      expect(JSON.parse(body)).toMatchObject({ error: { type: 'authentication_error', code: 'invalid_metrics_token' } });
    }
    const ok = await fetch(`${url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain(`tenant="${TENANT}"`);
  });
});

describe('the metrics listener', () => {
  it('serves the metrics on its own port', async () => {
    const listener = await startMetricsServer(metricsWithTenant(), 0, { host: '127.0.0.1' });
    stops.push(listener.stop);
    const res = await fetch(listener.url);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain(`tenant="${TENANT}"`);
  });

  it('requires the token when one is set', async () => {
    const listener = await startMetricsServer(metricsWithTenant(), 0, { host: '127.0.0.1', token: TOKEN });
    stops.push(listener.stop);
    const anonymous = await fetch(listener.url);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toContain(TENANT);
    expect((await fetch(listener.url, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });

  it('says which port is taken', async () => {
    const first = await startMetricsServer(createMetrics(), 0, { host: '127.0.0.1' });
    stops.push(first.stop);
    const port = Number(new URL(first.url).port);
    await expect(startMetricsServer(createMetrics(), port, { host: '127.0.0.1' })).rejects.toThrow(`metrics port ${port} is in use`);
  });
});

describe('metricsAuthorized', () => {
  it('takes exactly "Bearer <token>"', () => {
    expect(metricsAuthorized(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(metricsAuthorized(`bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(metricsAuthorized(undefined, TOKEN)).toBe(false);
    expect(metricsAuthorized(`Bearer ${TOKEN}x`, TOKEN)).toBe(false);
    expect(metricsAuthorized(`Basic ${TOKEN}`, TOKEN)).toBe(false);
  });
});
