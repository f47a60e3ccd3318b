/** A bare `/metrics` endpoint for worker processes (the API serves its own). */
import http from 'node:http';
import type { Metrics } from './metrics.js';

export async function startMetricsServer(metrics: Metrics, port: number): Promise<{ url: string; stop(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      metrics.registry.metrics().then((body) => {
        res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
        res.end(body);
      }, () => res.writeHead(500).end());
    } else if (req.url === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, '0.0.0.0', resolve));
  const address = server.address();
  const actual = typeof address === 'object' && address ? address.port : port;
  return { url: `http://127.0.0.1:${actual}/metrics`, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}
