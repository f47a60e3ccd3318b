/**
 * The files `npm run cluster` and docker-compose.yml share, checked by the programs that read them:
 * the dynamic config by the pinned Temporal server's own validator (known keys, right types), the
 * load balancer's rendered configuration by `nginx -t`.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TEMPORAL_DEPLOY_DIR, TEMPORAL_SERVER_BIN } from '../../scripts/lib/cluster/temporal-server.js';
import { nginxBinary, renderNginxConfig } from '../../scripts/lib/cluster/lb.js';

const run = promisify(execFile);

describe('deploy/temporal/dynamicconfig.yaml', () => {
  it('has only keys the pinned server knows, with values of their types', async () => {
    const bad = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-dc-')), 'bad.yaml');
    await fs.writeFile(bad, 'sluice.notAKey:\n  - value: 1\n    constraints: {}\n');
    // The validator reports problems as warnings (exit code 0): it must flag a bad file...
    const flagged = await run(TEMPORAL_SERVER_BIN, ['validate-dynamic-config', bad]);
    expect(flagged.stdout + flagged.stderr).toMatch(/warning: unregistered key/);
    // ...and find nothing in ours.
    const ours = await run(TEMPORAL_SERVER_BIN, ['validate-dynamic-config', path.join(TEMPORAL_DEPLOY_DIR, 'dynamicconfig.yaml')]);
    expect(ours.stdout + ours.stderr).not.toMatch(/warning/i);
    await fs.rm(path.dirname(bad), { recursive: true, force: true });
  });
});

describe('deploy/lb/nginx.conf.template', () => {
  it('renders to a configuration nginx accepts, with one server line per API', async () => {
    const nginx = nginxBinary();
    expect(nginx, 'nginx (scripts/install-lb.sh)').not.toBeNull();
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sluice-lb-'));
    const conf = renderNginxConfig({ prefix: dir, listen: '127.0.0.1:1', upstreams: ['127.0.0.1:2', '127.0.0.1:3'], runAsRoot: false });
    expect(conf.match(/^\s*server 127\.0\.0\.1:\d+ /gm)).toHaveLength(2);
    for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await fs.mkdir(path.join(dir, sub));
    await fs.writeFile(path.join(dir, 'nginx.conf'), conf);
    const checked = await run(nginx as string, ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr']);
    expect(checked.stderr).toMatch(/test is successful/);
    expect(() => renderNginxConfig({ prefix: dir, listen: '127.0.0.1:1', upstreams: ['x; include /etc/passwd'], runAsRoot: false })).toThrow(/not a host:port/);
    await fs.rm(dir, { recursive: true, force: true });
  });
});
