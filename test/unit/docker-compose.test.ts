/**
 * The production shape in docker-compose.yml, checked without a Docker engine: the services exist,
 * Temporal persists in the PostgreSQL service, Sluice's search attributes are registered, images
 * are pinned, the GPU worker reserves NVIDIA GPUs, commands are real npm scripts, the start
 * order only names services that exist; required keys, separate non-superuser database roles, each
 * container only the secrets it reads, metrics off the published API port, no instant backend;
 * Prometheus scraping every Sluice process with the shipped rules, Grafana provisioned; and
 * Temporal runs the version and the files of deploy/temporal/ that `npm run cluster` runs with.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DEV_SERVER_DYNAMIC_CONFIG } from '../../scripts/lib/temporal-dev-server.js';
import { searchAttributeFile, TEMPORAL_SERVER_VERSION } from '../../scripts/lib/cluster/temporal-server.js';
import { SEARCH_ATTRIBUTE_NAMES } from '../../contracts/ids.js';

interface ComposeService {
  image?: string;
  build?: string | { context?: string; target?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, unknown> | string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  volumes?: Array<string | { type?: string; source?: string; target?: string; read_only?: boolean }>;
  ports?: Array<string | number | { target?: number; published?: string | number }>;
  healthcheck?: { test?: string | string[] };
  deploy?: {
    replicas?: number;
    resources?: {
      reservations?: {
        devices?: Array<{ driver?: string; count?: string | number; device_ids?: string[]; capabilities?: string[] }>;
      };
    };
  };
}

interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  configs?: Record<string, { content?: string; file?: string }>;
}

const root = new URL('../../', import.meta.url);
const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'), { merge: true }) as ComposeFile;
const services = compose.services;

const SEARCH_ATTRIBUTES = [
  'SluiceKind',
  'SluiceTenant',
  'SluiceModel',
  'SluicePool',
  'SluiceVariant',
  'SluiceStatus',
  'SluiceBatch',
] as const;

/** The npm script each Sluice service must run. */
const SLUICE_COMMANDS = {
  api: 'api',
  'worker-control': 'worker:control',
  'worker-inference-gpu': 'worker:inference',
} as const;

/** A service by name, failing the test when it is missing. */
function service(name: string): ComposeService {
  const found = services[name];
  if (!found) {
    throw new Error(`docker-compose.yml has no service "${name}"`);
  }
  return found;
}

/** A service's environment as a map, whichever of the two Compose forms it uses. */
function envOf(svc: ComposeService): Record<string, string> {
  const env = svc.environment ?? {};
  const entries = Array.isArray(env)
    ? env.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const)
    : Object.entries(env).map(([key, value]) => [key, String(value)] as const);
  return Object.fromEntries(entries);
}

/** A service's dependencies as name → condition (`service_started` for the short form). */
function dependsOn(svc: ComposeService): Record<string, string> {
  const deps = svc.depends_on ?? {};
  if (Array.isArray(deps)) {
    return Object.fromEntries(deps.map((name) => [name, 'service_started']));
  }
  return Object.fromEntries(Object.entries(deps).map(([name, dep]) => [name, dep.condition ?? 'service_started']));
}

/** A service's command as one string. */
function commandOf(svc: ComposeService): string {
  return Array.isArray(svc.command) ? svc.command.join(' ') : (svc.command ?? '');
}

/** A service's entrypoint and command as one string. */
function runsOf(svc: ComposeService): string {
  const entrypoint = Array.isArray(svc.entrypoint) ? svc.entrypoint.join(' ') : (svc.entrypoint ?? '');
  return `${entrypoint} ${commandOf(svc)}`;
}

/** The text of a file under deploy/temporal/. */
const deployFile = (name: string) => readFileSync(new URL(`deploy/temporal/${name}`, root), 'utf8');

/** Where a service mounts ./deploy/temporal (read-only), or undefined. */
function deployMount(svc: ComposeService): string | undefined {
  const mount = (svc.volumes ?? []).find((v): v is string => typeof v === 'string' && v.startsWith('./deploy/temporal:'));
  return mount?.endsWith(':ro') ? mount.split(':')[1] : undefined;
}

/** Resolves Compose's `${VAR:-default}` / `${VAR-default}` to the default, as an unset variable would. */
function withDefaults(value: string): string {
  return value.replace(/\$\{[A-Z0-9_]+:?-([^}]*)\}/g, '$1');
}

/** True when an image reference names a tag other than `latest` (or a digest). */
function isPinned(image: string): boolean {
  const reference = withDefaults(image);
  if (reference.includes('@sha256:')) {
    return true;
  }
  const lastSegment = reference.split('/').at(-1) ?? '';
  const tag = lastSegment.includes(':') ? lastSegment.slice(lastSegment.indexOf(':') + 1) : '';
  return tag !== '' && tag !== 'latest' && !tag.includes('$');
}

/** Services built from the repository's Dockerfile: the Sluice processes. */
function sluiceServices(): Array<[string, ComposeService]> {
  return Object.entries(services).filter(([, svc]) => svc.build !== undefined);
}

/** The one-shot service that registers search attributes, found by what it runs. */
function searchAttributeService(): [string, ComposeService] {
  const found = Object.entries(services).find(([, svc]) => runsOf(svc).includes('setup-namespace.sh'));
  if (!found) {
    throw new Error('no service runs deploy/temporal/setup-namespace.sh');
  }
  return found;
}

/** The name of the PostgreSQL service. */
function postgresServiceName(): string {
  const found = Object.entries(services).find(([, svc]) => svc.image?.startsWith('postgres:'));
  if (!found) {
    throw new Error('no service runs the postgres image');
  }
  return found[0];
}

describe('docker-compose.yml: services', () => {
  it('defines PostgreSQL, Temporal, the Temporal UI and the Sluice processes', () => {
    for (const name of ['temporal', 'temporal-ui', ...Object.keys(SLUICE_COMMANDS)]) {
      expect(services, `service ${name}`).toHaveProperty([name]);
    }
    expect(postgresServiceName()).toBeTruthy();
  });

  it('runs PostgreSQL 17 with a healthcheck and a named volume for its data', () => {
    const postgres = service(postgresServiceName());
    expect(postgres.image).toMatch(/^postgres:17(\.|-|$)/);
    expect(postgres.healthcheck?.test).toBeDefined();
    const dataVolume = (postgres.volumes ?? [])
      .filter((v): v is string => typeof v === 'string')
      .find((v) => v.endsWith(':/var/lib/postgresql/data'));
    expect(dataVolume).toBeDefined();
    expect(compose.volumes ?? {}).toHaveProperty([dataVolume?.split(':')[0] ?? '']);
  });

  it('persists Temporal in the PostgreSQL service and waits for it', () => {
    const temporal = service('temporal');
    const env = envOf(temporal);
    expect(temporal.image).toMatch(/^temporalio\/server:/);
    expect(env['TEMPORAL_DB_HOST']).toBe(postgresServiceName());
    expect(runsOf(temporal)).toMatch(new RegExp(`temporal-server --config-file ${deployMount(temporal)}/config.yaml\\b`));
    expect(temporal.healthcheck?.test).toBeDefined();
    expect(startsAfter('temporal', postgresServiceName())).toBe(true);
  });

  it('publishes the Temporal UI on port 8233', () => {
    const ui = service('temporal-ui');
    expect(ui.image).toMatch(/^temporalio\/ui:/);
    const ports = (ui.ports ?? []).map(String);
    expect(ports.some((port) => /(^|:)8233:8080$/.test(port))).toBe(true);
  });
});

describe('docker-compose.yml: search attributes', () => {
  it('registers all seven Sluice search attributes as Keyword once Temporal is healthy', () => {
    const [, setup] = searchAttributeService();
    expect(setup.image).toMatch(/^temporalio\/admin-tools:/);
    expect(dependsOn(setup)['temporal']).toBe('service_healthy');
    expect(runsOf(setup)).toContain(`${deployMount(setup)}/setup-namespace.sh`);
    expect(deployFile('setup-namespace.sh')).toMatch(/search-attribute create[^\n]*--type Keyword/);
    expect(searchAttributeFile()).toEqual([...SEARCH_ATTRIBUTES]);
  });

  it('registers them in the namespace the Sluice services use', () => {
    const [, setup] = searchAttributeService();
    const namespaces = new Set(Object.keys(SLUICE_COMMANDS).map((name) => envOf(service(name))['TEMPORAL_NAMESPACE']));
    expect([...namespaces]).toEqual([envOf(setup)['NAMESPACE']]);
  });
});

describe('docker-compose.yml: images and build', () => {
  it('pins every image (a tag that is not latest, or a digest)', () => {
    const images = Object.entries(services).filter(([, svc]) => svc.image !== undefined);
    expect(images.length).toBeGreaterThan(0);
    for (const [name, svc] of images) {
      expect(isPinned(svc.image ?? ''), `${name}: ${svc.image}`).toBe(true);
    }
  });

  it('builds the Sluice services from the Dockerfile, on targets it defines', () => {
    const dockerfilePath = new URL('Dockerfile', root);
    expect(existsSync(dockerfilePath)).toBe(true);
    expect(existsSync(new URL('.dockerignore', root))).toBe(true);
    const dockerfile = readFileSync(dockerfilePath, 'utf8');
    const stages = new Set([...dockerfile.matchAll(/^FROM\s+\S+\s+AS\s+(\S+)/gim)].map((match) => match[1]));
    for (const name of Object.keys(SLUICE_COMMANDS)) {
      const build = service(name).build;
      expect(build, name).toBeDefined();
      const target = typeof build === 'object' ? build.target : undefined;
      if (target !== undefined) {
        expect(stages, `${name} target ${target}`).toContain(target);
      }
    }
  });

  it('bases the image on a pinned node 20 bookworm-slim', () => {
    const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
    const nodeImage = /^ARG NODE_IMAGE=(\S+)/m.exec(dockerfile)?.[1] ?? /^FROM\s+(node:\S+)/m.exec(dockerfile)?.[1];
    expect(nodeImage).toMatch(/^node:20\.\d+\.\d+-bookworm-slim$/);
  });
});

describe('docker-compose.yml: Sluice services', () => {
  it('runs each Sluice process with its npm script, and every such script exists in package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts?: Record<string, string> };
    const scripts = pkg.scripts ?? {};
    for (const [name, script] of Object.entries(SLUICE_COMMANDS)) {
      expect(service(name).command, name).toEqual(['npm', 'run', script]);
    }
    for (const [name, svc] of sluiceServices()) {
      const match = /^npm run (\S+)$/.exec(commandOf(svc));
      expect(match, `${name} runs an npm script`).not.toBeNull();
      expect(Object.keys(scripts), `package.json script for ${name}`).toContain(match?.[1]);
    }
  });

  it('configures every long-running Sluice service for the cluster', () => {
    for (const name of Object.keys(SLUICE_COMMANDS)) {
      const env = envOf(service(name));
      expect(env['TEMPORAL_ADDRESS'], name).toBe('temporal:7233');
      expect(env['TEMPORAL_NAMESPACE'], name).toBe('default');
      expect(env['SLUICE_DATA_DIR'], name).toBeTruthy();
    }
    const postgres = postgresServiceName();
    for (const name of ['api', 'worker-control', 'migrate']) {
      expect(envOf(service(name))['DATABASE_URL'], name).toMatch(new RegExp(`^postgres(ql)?://[^@]+@${postgres}:5432/`));
    }
    expect(envOf(service('api'))['PORT']).toBe('8080');
  });

  it('reserves NVIDIA GPUs for two inference replicas of the gpu pool, with models read-only', () => {
    const gpu = service('worker-inference-gpu');
    expect(envOf(gpu)['SLUICE_POOL']).toBe('gpu');
    expect(gpu.deploy?.replicas).toBe(2);
    const devices = gpu.deploy?.resources?.reservations?.devices ?? [];
    const nvidia = devices.find((device) => device.driver === 'nvidia');
    expect(nvidia?.capabilities).toContain('gpu');
    expect(nvidia?.count === 'all' || (typeof nvidia?.count === 'number' && nvidia.count >= 1)).toBe(true);
    const readOnly = (gpu.volumes ?? []).filter((v): v is string => typeof v === 'string' && v.endsWith(':ro'));
    expect(readOnly.length).toBeGreaterThan(0);
    for (const volume of readOnly) {
      expect(compose.volumes ?? {}).toHaveProperty([volume.split(':')[0] ?? '']);
    }
  });
});

/** A compose-required variable: `${NAME:?message}` (compose refuses to start without it). */
const required = (name: string) => new RegExp(`^\\$\\{${name}:\\?[^}]+\\}$`);
/** The user name in a postgres:// URL. */
const userOf = (url: string | undefined) => (url ? decodeURIComponent(new URL(url.replace(/\$\{[^}]*\}/g, 'x')).username) : '');

describe('docker-compose.yml: secrets and roles', () => {
  it('refuses to start the Sluice processes without the payload key, and the API and control worker without the audit key', () => {
    for (const name of Object.keys(SLUICE_COMMANDS)) {
      expect(envOf(service(name))['SLUICE_PAYLOAD_KEY'], name).toMatch(required('SLUICE_PAYLOAD_KEY'));
    }
    for (const name of ['api', 'worker-control']) {
      expect(envOf(service(name))['SLUICE_AUDIT_KEY'], name).toMatch(required('SLUICE_AUDIT_KEY'));
    }
    expect(envOf(service('worker-control'))['SLUICE_ADMIN_KEY']).toMatch(required('SLUICE_ADMIN_KEY'));
  });

  it('gives each container only the secrets its process reads', () => {
    const secrets = ['DATABASE_URL', 'SLUICE_STREAM_DATABASE_URL', 'SLUICE_ADMIN_KEY', 'SLUICE_AUDIT_KEY', 'SLUICE_PAYLOAD_KEY', 'POSTGRES_PASSWORD', 'PGPASSWORD', 'SLUICE_DB_PASSWORD', 'SLUICE_STREAM_DB_PASSWORD', 'TEMPORAL_DB_PASSWORD', 'POSTGRES_PWD', 'SQL_PASSWORD'];
    const allowed: Record<string, string[]> = {
      api: ['DATABASE_URL', 'SLUICE_AUDIT_KEY', 'SLUICE_PAYLOAD_KEY'],
      'worker-control': ['DATABASE_URL', 'SLUICE_AUDIT_KEY', 'SLUICE_PAYLOAD_KEY', 'SLUICE_ADMIN_KEY'],
      // Inference reads no database (scripts/worker-inference.ts) and never bootstraps or audits; it
      // only appends streamed chunks, as the stream writer role.
      'worker-inference-gpu': ['SLUICE_PAYLOAD_KEY', 'SLUICE_STREAM_DATABASE_URL'],
      migrate: ['DATABASE_URL'],
    };
    for (const [name, keys] of Object.entries(allowed)) {
      const present = secrets.filter((secret) => envOf(service(name))[secret] !== undefined);
      expect(present.sort(), name).toEqual([...keys].sort());
    }
    // PostgreSQL's superuser password reaches only PostgreSQL and the one-shot that makes the roles.
    const withSuperuser = Object.entries(services)
      .filter(([, svc]) => Object.values(envOf(svc)).some((v) => v.includes('${POSTGRES_PASSWORD')))
      .map(([name]) => name);
    expect(withSuperuser.sort()).toEqual([postgresServiceName(), 'postgres-roles'].sort());
  });

  it('has Sluice and Temporal log in as separate roles, neither of them the superuser, made without superuser rights', () => {
    const superuser = envOf(service(postgresServiceName()))['POSTGRES_USER'];
    const sluice = userOf(envOf(service('api'))['DATABASE_URL']);
    const temporal = envOf(service('temporal'))['TEMPORAL_DB_USER'];
    expect(sluice).toBe('sluice');
    expect(temporal).toBe('temporal');
    expect(superuser).not.toBe(sluice);
    expect(superuser).not.toBe(temporal);
    for (const name of ['worker-control', 'migrate']) expect(userOf(envOf(service(name))['DATABASE_URL']), name).toBe(sluice);
    expect(envOf(service('temporal-schema'))['SQL_USER']).toBe(temporal);
    const roles = commandOf(service('postgres-roles'));
    for (const role of [sluice, temporal]) {
      expect(roles, role).toMatch(new RegExp(`ALTER ROLE ${role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`));
    }
    expect(roles).toMatch(/REVOKE ALL ON DATABASE sluice, temporal, temporal_visibility FROM PUBLIC/);
    // The inference workers log in as the stream writer, a role of its own that is neither.
    const stream = userOf(envOf(service('worker-inference-gpu'))['SLUICE_STREAM_DATABASE_URL']);
    expect(stream).toBe('sluice_stream');
    expect(roles).toMatch(/ALTER ROLE sluice_stream WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE/);
    expect(roles).toMatch(/GRANT sluice_stream_writer TO sluice_stream;/);
    for (const name of ['temporal-schema', 'migrate']) {
      expect(dependsOn(service(name))['postgres-roles'], name).toBe('service_completed_successfully');
    }
  });

  it('serves metrics on a listener of their own that no port publishes, not on the API port', () => {
    for (const name of Object.keys(SLUICE_COMMANDS)) {
      const svc = service(name);
      const metricsPort = envOf(svc)['SLUICE_METRICS_PORT'];
      expect(metricsPort, name).toMatch(/^\d+$/);
      expect(metricsPort, name).not.toBe(envOf(svc)['PORT'] ?? '8080');
      const published = (svc.ports ?? []).map((p) => String(typeof p === 'object' ? p.target : p).split(':').at(-1));
      expect(published, name).not.toContain(metricsPort);
      // No token: the API port serves no /metrics at all.
      expect(envOf(svc)['SLUICE_METRICS_TOKEN'], name).toBeUndefined();
    }
  });

  it('never turns on the instant (test) backend', () => {
    for (const [name, svc] of Object.entries(services)) {
      expect(Object.keys(envOf(svc)), name).not.toContain('SLUICE_ENABLE_INSTANT_BACKEND');
    }
  });
});

describe('docker-compose.yml: start order', () => {
  const conditions = ['service_started', 'service_healthy', 'service_completed_successfully'];

  it('depends only on services that exist, with valid conditions', () => {
    for (const [name, svc] of Object.entries(services)) {
      for (const [target, condition] of Object.entries(dependsOn(svc))) {
        expect(services, `${name} depends on ${target}`).toHaveProperty([target]);
        expect(conditions, `${name} → ${target}`).toContain(condition);
      }
    }
  });

  it('waits on health or completion, never on a bare start', () => {
    for (const [name, svc] of Object.entries(services)) {
      for (const [target, condition] of Object.entries(dependsOn(svc))) {
        expect(condition, `${name} → ${target}`).not.toBe('service_started');
        if (condition === 'service_healthy') {
          expect(service(target).healthcheck?.test, `${target} needs a healthcheck`).toBeDefined();
        }
      }
    }
  });

  it('starts the Sluice services only after Temporal is set up and PostgreSQL is up', () => {
    const [setupName] = searchAttributeService();
    for (const name of Object.keys(SLUICE_COMMANDS)) {
      expect(startsAfter(name, setupName), `${name} after ${setupName}`).toBe(true);
      expect(startsAfter(name, postgresServiceName()), `${name} after postgres`).toBe(true);
    }
  });

  it('has no dependency cycles', () => {
    for (const name of Object.keys(services)) {
      expect(startsAfter(name, name), name).toBe(false);
    }
  });
});

describe('docker-compose.yml: Temporal dynamic config', () => {
  const dynamicConfig = parse(deployFile('dynamicconfig.yaml')) as Record<string, Array<{ value: unknown }>>;
  const valueOf = (key: string): unknown => dynamicConfig[key]?.[0]?.value;

  it('is deploy/temporal/dynamicconfig.yaml, the file the Temporal service is told to watch', () => {
    const temporal = service('temporal');
    expect(envOf(temporal)['TEMPORAL_DYNAMIC_CONFIG']).toBe(`${deployMount(temporal)}/dynamicconfig.yaml`);
    expect(deployFile('config.yaml')).toMatch(/dynamicConfigClient:\s+filepath: "\{\{ env "TEMPORAL_DYNAMIC_CONFIG" \}\}"/);
  });

  it('turns on the matcher that priority and fairness need, as the dev server does', () => {
    for (const key of ['matching.useNewMatcher', 'matching.enableFairness']) {
      expect(DEV_SERVER_DYNAMIC_CONFIG[key]).toBe(true);
      expect(valueOf(key)).toBe(true);
    }
  });

  it('carries the dev server\'s value for every key both set (history read limits, partitions)', () => {
    const shared = Object.keys(DEV_SERVER_DYNAMIC_CONFIG).filter((key) => key in dynamicConfig);
    expect(shared).toEqual(expect.arrayContaining(['history.transferProcessorMaxPollRPS', 'history.timerProcessorMaxPollRPS', 'history.visibilityProcessorMaxPollRPS', 'matching.numTaskqueueReadPartitions']));
    for (const key of shared) {
      expect(valueOf(key), key).toBe(DEV_SERVER_DYNAMIC_CONFIG[key]);
    }
  });
});

describe('docker-compose.yml: monitoring', () => {
  const deploy = new URL('deploy/', root);
  /** A service's bind mounts as container path → host path (relative to the repository root). */
  const mounts = (svc: ComposeService): Record<string, string> => Object.fromEntries((svc.volumes ?? [])
    .filter((v): v is string => typeof v === 'string' && v.startsWith('./'))
    .map((v) => { const [host, target] = v.split(':'); return [target ?? '', (host ?? '').slice(2)]; }));
  const hostFile = (svc: ComposeService, target: string): string => {
    const host = mounts(svc)[target];
    expect(host, `${target} is mounted`).toBeDefined();
    expect(existsSync(new URL(host ?? '', root)), `${host} exists`).toBe(true);
    return host ?? '';
  };
  interface ScrapeConfig { job_name: string; static_configs?: Array<{ targets: string[] }>; dns_sd_configs?: Array<{ names: string[]; type?: string; port?: number }> }
  const prometheus = service('prometheus');
  const promConfig = parse(readFileSync(new URL(hostFile(prometheus, '/etc/prometheus/prometheus.yml'), root), 'utf8')) as { rule_files: string[]; scrape_configs: ScrapeConfig[] };

  it('runs Prometheus with the shipped config and rules, its rule file where the config looks for it', () => {
    expect(promConfig.rule_files).toEqual(['/etc/prometheus/rules.yml']);
    expect(hostFile(prometheus, '/etc/prometheus/rules.yml')).toBe('deploy/prometheus/rules.yml');
    expect(commandOf(prometheus)).toMatch(/--config\.file=\/etc\/prometheus\/prometheus\.yml/);
    // The slowest burn-rate window (3d) must stay within retention.
    const retention = /--storage\.tsdb\.retention\.time=(\d+)d/.exec(commandOf(prometheus))?.[1];
    expect(Number(retention)).toBeGreaterThanOrEqual(3);
  });

  it('scrapes the metrics listener of every Sluice process, every inference replica included', () => {
    const targets = promConfig.scrape_configs.flatMap((c) => [
      ...(c.static_configs ?? []).flatMap((s) => s.targets),
      ...(c.dns_sd_configs ?? []).flatMap((d) => d.names.map((n) => `${n}:${d.port}`)),
    ]);
    for (const name of Object.keys(SLUICE_COMMANDS)) {
      expect(targets, name).toContain(`${name}:${envOf(service(name))['SLUICE_METRICS_PORT']}`);
    }
    // A replicated service is found by DNS (every container), not as one static name.
    const replicated = Object.keys(SLUICE_COMMANDS).filter((name) => (service(name).deploy?.replicas ?? 1) > 1);
    for (const name of replicated) {
      expect(promConfig.scrape_configs.some((c) => (c.dns_sd_configs ?? []).some((d) => d.names.includes(name) && d.type === 'A')), name).toBe(true);
    }
  });

  it('provisions Grafana with the Prometheus datasource and the Sluice dashboard', () => {
    const grafana = service('grafana');
    expect(hostFile(grafana, '/etc/grafana/provisioning')).toBe('deploy/grafana/provisioning');
    const dashboards = hostFile(grafana, '/etc/grafana/dashboards');
    const datasource = parse(readFileSync(new URL('grafana/provisioning/datasources/prometheus.yml', deploy), 'utf8')) as { datasources: Array<{ uid: string; type: string; url: string }> };
    const provider = parse(readFileSync(new URL('grafana/provisioning/dashboards/sluice.yml', deploy), 'utf8')) as { providers: Array<{ type: string; options: { path: string } }> };
    expect(provider.providers.map((p) => p.options.path)).toContain('/etc/grafana/dashboards');
    const [ds] = datasource.datasources;
    expect(ds?.type).toBe('prometheus');
    expect(ds?.url).toBe(`http://prometheus:${/127\.0\.0\.1:\d+:(\d+)/.exec(String(prometheus.ports?.[0]))?.[1]}`);
    const dashboard = JSON.parse(readFileSync(new URL(`${dashboards}/sluice.json`, root), 'utf8')) as { panels: Array<{ datasource?: { uid: string } }> };
    const uids = new Set(dashboard.panels.flatMap((p) => (p.datasource ? [p.datasource.uid] : [])));
    expect([...uids]).toEqual([ds?.uid]);
    expect(dependsOn(grafana)['prometheus']).toBe('service_healthy');
    expect(envOf(grafana)['GF_SECURITY_ADMIN_PASSWORD']).toMatch(required('GRAFANA_ADMIN_PASSWORD'));
  });

  it('publishes Prometheus and Grafana on loopback only (the metrics carry tenant IDs)', () => {
    for (const name of ['prometheus', 'grafana']) {
      const ports = service(name).ports ?? [];
      expect(ports.length, name).toBeGreaterThan(0);
      for (const port of ports) expect(String(port), name).toMatch(/^127\.0\.0\.1:/);
    }
  });
});

describe('docker-compose.yml and npm run cluster: one Temporal', () => {
  it('runs the server and admin-tools images of the version the cluster builds (deploy/temporal/VERSION)', () => {
    expect(TEMPORAL_SERVER_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
    const temporalImages = Object.entries(services).filter(([, svc]) => /^temporalio\/(server|admin-tools|auto-setup):/.test(svc.image ?? ''));
    expect(temporalImages.map(([name]) => name).sort()).toEqual(['temporal', 'temporal-schema', 'temporal-setup']);
    for (const [name, svc] of temporalImages) {
      expect(svc.image, name).toBe(`${(svc.image ?? '').split(':')[0]}:${TEMPORAL_SERVER_VERSION}`);
    }
    expect(readFileSync(new URL('scripts/install-temporal-server.sh', root), 'utf8')).toContain('deploy/temporal/VERSION');
  });

  it('mounts deploy/temporal read-only into each Temporal service and runs its scripts', () => {
    expect(runsOf(service('temporal-schema'))).toContain(`${deployMount(service('temporal-schema'))}/setup-schema.sh`);
    for (const name of ['temporal', 'temporal-schema', 'temporal-setup']) {
      expect(deployMount(service(name)), name).toBeDefined();
    }
  });

  it('persists in PostgreSQL with SQL visibility on the postgres12 plugin', () => {
    const config = deployFile('config.yaml');
    expect(config.split('\n')[0]).toBe('# enable-template');
    expect(config).toMatch(/visibilityStore: visibility/);
    expect([...config.matchAll(/pluginName: (\S+)/g)].map((m) => m[1])).toEqual(['postgres12', 'postgres12']);
    expect(deployFile('setup-schema.sh')).toMatch(/--plugin postgres12/);
  });

  it('registers exactly the search attributes of contracts/ids.ts', () => {
    expect(searchAttributeFile()).toEqual(SEARCH_ATTRIBUTE_NAMES);
  });
});

/** True when `name` (transitively) waits for `dependency`. */
function startsAfter(name: string, dependency: string): boolean {
  const seen = new Set<string>();
  const pending = Object.keys(dependsOn(service(name)));
  while (pending.length > 0) {
    const next = pending.pop() ?? '';
    if (next === dependency) {
      return true;
    }
    if (!seen.has(next) && services[next]) {
      seen.add(next);
      pending.push(...Object.keys(dependsOn(service(next))));
    }
  }
  return false;
}
