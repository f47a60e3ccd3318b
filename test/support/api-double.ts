/**
 * An HTTP double of the Sluice API for the CLI's unit tests: a server on 127.0.0.1 that records
 * each request and answers with canned, API-shaped JSON set per `METHOD /path`. It stands in for
 * the API only in the CLI tests (the CLI talks to it through the real `fetch`); everything else is
 * tested against the real API.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Recorded {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  contentType: string | undefined;
  body: unknown;
}

export interface Canned {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface ApiDouble {
  url: string;
  /** The requests received since the last {@link ApiDouble.reset}, in order. */
  recorded: Recorded[];
  /** Canned answers by `METHOD /path`; a request to any other route gets `notFound`. */
  routes: Map<string, Canned>;
  /** Forgets the requests and the routes (between tests). */
  reset(): void;
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? undefined : JSON.parse(text);
}

/** Starts the double; `notFound` answers a route without a canned answer. */
export async function startApiDouble(notFound: (method: string, path: string) => Canned): Promise<ApiDouble> {
  const recorded: Recorded[] = [];
  const routes = new Map<string, Canned>();
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      recorded.push({
        method: req.method ?? '',
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        body: await readBody(req),
      });
      const canned = routes.get(`${req.method} ${url.pathname}`) ?? notFound(req.method ?? '', url.pathname);
      res.writeHead(canned.status, { 'content-type': 'application/json', ...canned.headers });
      res.end(JSON.stringify(canned.body));
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    recorded,
    routes,
    reset() {
      recorded.length = 0;
      routes.clear();
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
