/**
 * The load balancer in front of the cluster's API processes: Debian's nginx (scripts/install-lb.sh),
 * run in the foreground with deploy/lb/nginx.conf.template rendered into the cluster's state folder.
 */
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { managedProcess, type ManagedProcess } from './process.js';

const TEMPLATE = fileURLToPath(new URL('../../../deploy/lb/nginx.conf.template', import.meta.url));
const NGINX_CANDIDATES = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'];

/** The nginx binary, or null when it is not installed. */
export function nginxBinary(): string | null {
  return NGINX_CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** The rendered nginx configuration for `upstreams` (host:port of each API process). */
export function renderNginxConfig(options: { prefix: string; listen: string; upstreams: readonly string[]; runAsRoot: boolean }): string {
  for (const u of [options.listen, ...options.upstreams]) {
    if (!/^[A-Za-z0-9.:[\]-]{1,300}$/.test(u)) throw new Error(`not a host:port for nginx: ${u}`);
  }
  return readFileSync(TEMPLATE, 'utf8')
    .replaceAll('@PREFIX@', options.prefix)
    .replaceAll('@LISTEN@', options.listen)
    // As root, nginx's workers switch to `nobody`; the temp paths are made for it below.
    .replaceAll('@USER@', options.runAsRoot ? 'user nobody nogroup;' : '')
    .replaceAll('@UPSTREAMS@', options.upstreams.map((u) => `    server ${u} max_fails=1 fail_timeout=2s;`).join('\n'));
}

export interface LoadBalancer {
  url: string;
  process: ManagedProcess;
}

/** Writes the configuration and creates the nginx process (not started). */
export async function loadBalancer(options: { dir: string; port: number; upstreams: readonly string[]; onLine?: (line: string) => void; onCrash?: (description: string) => void }): Promise<LoadBalancer> {
  const nginx = nginxBinary();
  if (nginx === null) throw new Error('nginx not found: run "bash scripts/install-lb.sh" (Debian\'s nginx)');
  const prefix = path.resolve(options.dir);
  await fs.mkdir(prefix, { recursive: true });
  const runAsRoot = process.getuid?.() === 0;
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    await fs.mkdir(path.join(prefix, sub), { recursive: true });
    if (runAsRoot) await fs.chmod(path.join(prefix, sub), 0o777);
  }
  const confFile = path.join(prefix, 'nginx.conf');
  const listen = `127.0.0.1:${options.port}`;
  await fs.writeFile(confFile, renderNginxConfig({ prefix, listen, upstreams: options.upstreams, runAsRoot }));
  const url = `http://${listen}`;
  const proc = managedProcess({
    name: 'lb',
    role: 'lb',
    command: nginx,
    args: ['-p', prefix, '-c', confFile, '-e', 'stderr'],
    env: {},
    probe: async () => {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
      return res !== null;
    },
    readyTimeoutMs: 30_000,
    ...(options.onLine ? { onLine: options.onLine } : {}),
    ...(options.onCrash ? { onCrash: options.onCrash } : {}),
  });
  return { url, process: proc };
}
