/** `sluice models list|add`. */
import { intOpt, requiredStr, str, UsageError, type CommandSpec } from './args.js';
import { formatMicros, formatTable, type Out } from './format.js';
import type { Handlers, ListJson } from './http.js';

export interface DeploymentBody {
  provider: 'llama-cpp' | 'openai-compatible';
  pool?: string;
  gguf_path?: string;
  base_url?: string;
  upstream_model?: string;
  api_key_ref?: string;
  price?: { input_micros_per_mtok?: number; output_micros_per_mtok?: number };
}

export interface ModelCreateBody {
  id: string;
  context_length?: number;
  max_output_tokens?: number;
  deployments: DeploymentBody[];
}

export type ModelAction = { kind: 'models.list' } | { kind: 'models.add'; body: ModelCreateBody };

export const modelCommands: readonly CommandSpec<ModelAction>[] = [
  {
    path: ['models', 'list'],
    synopsis: '',
    summary: 'list models with their deployments and current prices',
    options: {},
    args: [],
    build: () => ({ kind: 'models.list' }),
  },
  {
    path: ['models', 'add'],
    synopsis:
      'MODEL_ID (--gguf PATH | --base-url URL --upstream-model M [--api-key-ref REF]) [--pool P] [--context N] [--max-output N] [--input-price MICROS_PER_MTOK] [--output-price MICROS_PER_MTOK]',
    summary: 'add a model with one deployment: llama.cpp (--gguf) or an OpenAI-compatible upstream (--base-url)',
    options: {
      gguf: { type: 'string', arg: 'PATH', help: 'GGUF file, absolute or relative to <data dir>/models (llama-cpp)' },
      'base-url': { type: 'string', arg: 'URL', help: 'upstream base URL (openai-compatible)' },
      'upstream-model': { type: 'string', arg: 'M', help: 'model name at the upstream (openai-compatible)' },
      'api-key-ref': { type: 'string', arg: 'REF', help: 'workers read the upstream key from SLUICE_UPSTREAM_KEY_<REF>' },
      pool: { type: 'string', arg: 'P', help: 'inference pool (default local)' },
      context: { type: 'string', arg: 'N', help: 'context length in tokens (default 2048)' },
      'max-output': { type: 'string', arg: 'N', help: 'max completion tokens (default min(512, context))' },
      'input-price': { type: 'string', arg: 'MICROS', help: 'micro-USD per million input tokens (default 0)' },
      'output-price': { type: 'string', arg: 'MICROS', help: 'micro-USD per million output tokens (default 0)' },
    },
    args: ['MODEL_ID'],
    build(v, [id]) {
      const gguf = str(v, 'gguf');
      const baseUrl = str(v, 'base-url');
      if ((gguf === undefined) === (baseUrl === undefined)) throw new UsageError('give exactly one of --gguf (llama.cpp) or --base-url (openai-compatible)');
      let deployment: DeploymentBody;
      if (gguf !== undefined) {
        for (const flag of ['upstream-model', 'api-key-ref']) {
          if (str(v, flag) !== undefined) throw new UsageError(`--${flag} only applies with --base-url`);
        }
        deployment = { provider: 'llama-cpp', gguf_path: gguf };
      } else {
        deployment = { provider: 'openai-compatible', base_url: baseUrl as string, upstream_model: requiredStr(v, 'upstream-model') };
        const ref = str(v, 'api-key-ref');
        if (ref !== undefined) deployment.api_key_ref = ref;
      }
      const pool = str(v, 'pool');
      if (pool !== undefined) deployment.pool = pool;
      const inputPrice = intOpt(v, 'input-price');
      const outputPrice = intOpt(v, 'output-price');
      if (inputPrice !== undefined || outputPrice !== undefined) {
        deployment.price = {};
        if (inputPrice !== undefined) deployment.price.input_micros_per_mtok = inputPrice;
        if (outputPrice !== undefined) deployment.price.output_micros_per_mtok = outputPrice;
      }
      const body: ModelCreateBody = { id: id as string, deployments: [deployment] };
      const context = intOpt(v, 'context', 1);
      if (context !== undefined) body.context_length = context;
      const maxOutput = intOpt(v, 'max-output', 1);
      if (maxOutput !== undefined) body.max_output_tokens = maxOutput;
      return { kind: 'models.add', body };
    },
  },
];

interface AdminModelJson {
  id: string;
  context_length: number;
  max_output_tokens: number;
  deployments: Array<{
    id: string;
    pool: string;
    provider: string;
    gguf_path: string | null;
    base_url: string | null;
    upstream_model: string | null;
    status: string;
    price: { input_micros_per_mtok: number; output_micros_per_mtok: number } | null;
  }>;
}

function printModels(models: readonly AdminModelJson[], out: Out, empty: string): void {
  if (models.length === 0) {
    if (empty) out(empty);
    return;
  }
  const rows = [['MODEL', 'CONTEXT', 'MAX OUT', 'DEPLOYMENT', 'POOL', 'PROVIDER', 'STATUS', 'IN $/MTOK', 'OUT $/MTOK', 'TARGET']];
  for (const m of models) {
    if (m.deployments.length === 0) rows.push([m.id, String(m.context_length), String(m.max_output_tokens), '-', '-', '-', '-', '-', '-', '-']);
    for (const d of m.deployments) {
      const target = d.gguf_path ?? `${d.base_url ?? '?'} (${d.upstream_model ?? '?'})`;
      rows.push([
        m.id, String(m.context_length), String(m.max_output_tokens), d.id, d.pool, d.provider, d.status,
        d.price ? formatMicros(d.price.input_micros_per_mtok) : '-', d.price ? formatMicros(d.price.output_micros_per_mtok) : '-', target,
      ]);
    }
  }
  out(formatTable(rows).join('\n'));
}

export const modelHandlers: Handlers<ModelAction> = {
  'models.list': {
    request: () => ({ method: 'GET', path: '/v1/admin/models' }),
    render(body, _a, { out }) {
      printModels((body as ListJson<AdminModelJson>).data, out, 'No models.');
    },
  },
  'models.add': {
    request: (a) => ({ method: 'POST', path: '/v1/admin/models', body: a.body }),
    render(body, _a, { out }) {
      const m = body as AdminModelJson;
      out(`Added model ${m.id}.`);
      printModels([m], out, '');
    },
  },
};
