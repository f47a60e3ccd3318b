/**
 * The metrics listener: a bare HTTP server that serves `/metrics` (and `/healthz`) on its own
 * port, apart from the API (whose port is public: the metrics carry tenant IDs). Worker processes
 * serve their metrics here; the API process and `npm start` do too, on `SLUICE_METRICS_PORT`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { Metrics } from './metrics.js';

/**
 * Whether an `Authorization` header carries the metrics token (`Bearer <token>`). Compared in
 * constant time over digests, so neither the token nor its length leaks through timing.
 */
export function metricsAuthorized(header: string | undefined, token: string): boolean {
  const match = /^Bearer (\S+)$/i.exec(header ?? '');
  if (!match?.[1]) return false;
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(match[1]), digest(token));
}

export interface MetricsServerOptions {
  /** Token `/metrics` requires; null = anyone who can reach the port. @default null */
  token?: string | null;
  /** Address to listen on. @default "0.0.0.0" */
  host?: string;
}

/** Starts the metrics listener on `port` (0 = any free port). */
export async function startMetricsServer(metrics: Metrics, port: number, options: MetricsServerOptions = {}): Promise<{ url: string; stop(): Promise<void> }> {
  const token = options.token ?? null;
  const host = options.host ?? '0.0.0.0';
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/metrics') {
      if (token !== null && !metricsAuthorized(req.headers.authorization, token)) {
        res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Bearer' }).end('metrics need the bearer token (SLUICE_METRICS_TOKEN)\n');
        return;
      }
      metrics.registry.metrics().then((body) => {
        res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
        res.end(body);
      }, () => res.writeHead(500).end());
    } else if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
    } else res.writeHead(404).end();
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE'
      ? new Error(`metrics port ${port} is in use by another process: stop it or set SLUICE_METRICS_PORT to a free port`)
      : err));
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const actual = typeof address === 'object' && address ? address.port : port;
  const shown = host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${shown}:${actual}/metrics`,
    stop: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
