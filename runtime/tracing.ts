/**
 * OpenTelemetry traces: the only place the SDK is configured. {@link installTracing} runs once per
 * process (the composition root, `scripts/lib/system.ts`) and gives back what the Temporal client
 * and workers need to carry one trace from the HTTP request through the workflow and its
 * activities to the backend call. Off (null) unless the config asks for it: then nothing of the
 * SDK is loaded and the API of `@opentelemetry/api` stays its no-op.
 *
 * What a span may carry is decided here and in {@link spanAttributesOf}: identifiers, names and
 * counts; never prompt or completion text, request bodies, API keys or upstream keys.
 */
import { createRequire } from 'node:module';
import { IncomingMessage } from 'node:http';
import { context, diag, DiagLogLevel, isSpanContextValid, propagation, SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { ClientInterceptors } from '@temporalio/client';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, InjectedSinks, Next, WorkerInterceptors } from '@temporalio/worker';
import type { OpenTelemetrySinks } from '@temporalio/interceptors-opentelemetry';
import type { Context as ActivityContext } from '@temporalio/activity';
import type { TracingConfig } from './config.js';
import type { Logger } from './logger.js';

/** Instrumentation scope of Sluice's own spans (the backend call). */
export const TRACER_NAME = 'sluice';

/** What the Temporal client and workers of a traced process are built with. */
export interface Tracing {
  /** The client's interceptors: `StartWorkflow:<type>` spans and the context in the start's headers. */
  readonly clientInterceptors: ClientInterceptors;
  /**
   * The workers' interceptors: `RunActivity:<type>` spans (with {@link spanAttributesOf}) and the
   * workflow interceptor module (`RunWorkflow`, `StartActivity` spans), which must be in the
   * workflow bundle (`workflowInterceptorModules` of `bundleWorkflowCode`).
   */
  readonly workerInterceptors: WorkerInterceptors & { workflowModules: string[] };
  /** The sink through which workflow code (in its sandbox) hands its spans to the process's processor. */
  readonly sinks: InjectedSinks<OpenTelemetrySinks>;
  /** Flushes the spans still queued, ends the instrumentation and unregisters the provider. */
  shutdown(): Promise<void>;
}

/**
 * The workflow interceptor module of `@temporalio/interceptors-opentelemetry` (`RunWorkflow`,
 * `StartActivity` spans), for `bundleWorkflowCode({ workflowInterceptorModules })` when workflows
 * run from a prebuilt bundle.
 */
export const WORKFLOW_INTERCEPTOR_MODULES: readonly string[] = [createRequire(import.meta.url).resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors')];

/** Paths whose requests get no span: probes and scrapes, not work. */
const UNTRACED_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

/** The path of a request URL without its query (a query is never recorded: it could hold anything). */
function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  return q === -1 ? raw : raw.slice(0, q);
}

/**
 * Installs the tracer provider (W3C trace context propagation, async-hooks context), the HTTP and
 * pg instrumentations and the OTLP exporter of `config`, once per process. `spanProcessor`
 * replaces the exporter (tests: an in-memory exporter; benchmarks). Null when `config` is null and
 * no processor is given: tracing is off.
 */
export async function installTracing(config: TracingConfig | null, log: Logger, options: { spanProcessor?: SpanProcessor } = {}): Promise<Tracing | null> {
  if (config === null && options.spanProcessor === undefined) return null;
  // Loaded only when on: a process without tracing never loads the SDK.
  const [{ NodeTracerProvider }, base, { Resource }, { registerInstrumentations }, { HttpInstrumentation }, { PgInstrumentation }, otelTemporal] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/instrumentation'),
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-pg'),
    import('@temporalio/interceptors-opentelemetry'),
  ]);
  const sampler = (() => {
    const s = config?.sampler ?? { name: 'parentbased_always_on', ratio: 1 };
    const root = s.name.endsWith('always_on') ? new base.AlwaysOnSampler()
      : s.name.endsWith('always_off') ? new base.AlwaysOffSampler()
        : new base.TraceIdRatioBasedSampler(s.ratio);
    return s.name.startsWith('parentbased_') ? new base.ParentBasedSampler({ root }) : root;
  })();
  let spanProcessor = options.spanProcessor;
  if (spanProcessor === undefined && config !== null) {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    spanProcessor = new base.BatchSpanProcessor(new OTLPTraceExporter({ url: config.endpoint, headers: { ...config.headers }, timeoutMillis: config.timeoutMs }));
  }
  const processor = spanProcessor as SpanProcessor;
  const resource = new Resource({ 'service.name': config?.serviceName ?? 'sluice' });
  // The SDK's errors (an export that failed) as Sluice log lines. Its warnings are left out: the one
  // it always gives ("pg has been loaded before the instrumentation") is handled below.
  diag.setLogger({
    error: (message, ...args) => log.warn('opentelemetry', { detail: [message, ...args.map((a) => (a instanceof Error ? a.message : String(a)))].join(' ').slice(0, 300) }),
    warn: () => undefined, info: () => undefined, debug: () => undefined, verbose: () => undefined,
  }, DiagLogLevel.ERROR);
  const provider = new NodeTracerProvider({ resource, sampler, spanProcessors: [processor] });
  provider.register();

  const disable = registerInstrumentations({
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (req) => UNTRACED_PATHS.has(pathOf(req.url)),
        // No client spans, so no trace context leaves Sluice: an upstream or a webhook receiver is
        // a third party (the backend span times the upstream call).
        disableOutgoingRequestInstrumentation: true,
        applyCustomAttributesOnSpan: (span, request) => {
          if (!(request instanceof IncomingMessage)) return;
          // Express has set the matched route on the request by now: name the span by it, never by the raw path.
          const req = request as IncomingMessage & { route?: { path?: unknown }; baseUrl?: string; res?: { locals?: { routeBase?: unknown } } };
          // A router restores `baseUrl` when an error leaves it: its mount path, as the app recorded it, then.
          const mounted = req.res?.locals?.routeBase;
          const routeBase = req.baseUrl || (typeof mounted === 'string' ? mounted : '');
          const route = typeof req.route?.path === 'string' ? `${routeBase}${req.route.path}` : 'unmatched';
          span.updateName(`${req.method ?? 'GET'} ${route}`);
          span.setAttributes({ 'http.route': route, 'http.target': pathOf(req.url), 'http.url': pathOf(req.url) });
        },
      }),
      // Statement text only (Kysely sends placeholders); values are never recorded.
      ...(config?.dbQueries ?? true ? [new PgInstrumentation({ enhancedDatabaseReporting: false, requireParentSpan: true, addSqlCommenterCommentToQueries: false })] : []),
    ],
  });
  // ESM imports of `pg` (and Express's `http`) do not pass through the require hook the
  // instrumentations patch with: one require of each applies the patch to the shared module objects.
  const require = createRequire(import.meta.url);
  require('node:http');
  require('pg');

  const tracer = trace.getTracer('@temporalio/interceptors-opentelemetry');
  return {
    clientInterceptors: { workflow: [new otelTemporal.OpenTelemetryWorkflowClientInterceptor({ tracer })] },
    workerInterceptors: {
      activity: [
        (ctx) => ({
          inbound: new otelTemporal.OpenTelemetryActivityInboundInterceptor(ctx, { tracer }),
          outbound: new otelTemporal.OpenTelemetryActivityOutboundInterceptor(ctx),
        }),
        (ctx) => ({ inbound: new ActivitySpanAttributes(ctx) }),
      ],
      workflowModules: [...WORKFLOW_INTERCEPTOR_MODULES],
    },
    sinks: { exporter: otelTemporal.makeWorkflowExporter(processor, resource) },
    async shutdown() {
      disable();
      await provider.shutdown();
      // Back to the API's no-ops: nothing traced after stop. (Installing again in the same process
      // is not supported: the instrumentations patch a module once.)
      trace.disable();
      context.disable();
      propagation.disable();
      diag.disable();
    },
  };
}

/** Identifier and count fields copied onto a span, by the name they have in activity inputs and results. */
const STRING_FIELDS: Readonly<Record<string, string>> = {
  requestId: 'sluice.request_id', tenantId: 'sluice.tenant_id', model: 'sluice.model', pool: 'sluice.pool',
  variant: 'sluice.variant', deploymentId: 'sluice.deployment', batchId: 'sluice.batch_id', kind: 'sluice.kind',
  finishReason: 'gen_ai.response.finish_reason', step: 'sluice.step',
};
const NUMBER_FIELDS: Readonly<Record<string, string>> = {
  promptTokens: 'gen_ai.usage.input_tokens', completionTokens: 'gen_ai.usage.output_tokens',
  estCostMicros: 'sluice.est_cost_micros', costMicros: 'sluice.cost_micros',
};
/** Nested objects whose fields are looked at too (a deployment target, an admission's assignment, a settle input). */
const NESTED = ['deployment', 'assignment', 'settle', 'authorized'] as const;

/**
 * The span attributes of an activity's input or result: only the whitelisted identifier and count
 * fields above (a deployment's `id`, `pool` and `provider`), at most one level deep. Messages,
 * contents, parameters and anything else are never read, so no text of a request can reach a span.
 */
export function spanAttributesOf(value: unknown): Attributes {
  const out: Attributes = {};
  const take = (o: unknown, depth: number) => {
    if (typeof o !== 'object' || o === null || Array.isArray(o)) return;
    const rec = o as Record<string, unknown>;
    for (const [field, name] of Object.entries(STRING_FIELDS)) {
      const v = rec[field];
      if (typeof v === 'string' && v.length <= 200) out[name] = v;
    }
    for (const [field, name] of Object.entries(NUMBER_FIELDS)) {
      const v = rec[field];
      if (typeof v === 'number' && Number.isFinite(v)) out[name] = v;
    }
    if (depth > 0) return;
    const dep = rec.deployment;
    if (typeof dep === 'object' && dep !== null && !Array.isArray(dep)) {
      const d = dep as Record<string, unknown>;
      if (typeof d.id === 'string') out['sluice.deployment'] = d.id;
      if (typeof d.pool === 'string') out['sluice.pool'] = d.pool;
      if (typeof d.provider === 'string') out['sluice.provider'] = d.provider;
    }
    for (const key of NESTED) if (key !== 'deployment') take(rec[key], depth + 1);
  };
  take(value, 0);
  return out;
}

/**
 * Puts the request's identifiers (tenant, model, pool, deployment, variant, request ID), the
 * attempt and the token counts on the `RunActivity` span the OpenTelemetry interceptor opened
 * before it (it must come after that interceptor in `interceptors.activity`).
 */
class ActivitySpanAttributes implements ActivityInboundCallsInterceptor {
  constructor(private readonly ctx: ActivityContext) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    const span = trace.getSpan(context.active());
    if (!span?.isRecording()) return next(input);
    span.setAttributes({ ...spanAttributesOf(input.args[0]), 'sluice.attempt': this.ctx.info.attempt });
    const result = await next(input);
    span.setAttributes(spanAttributesOf(result));
    return result;
  }
}

/** The active span's W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), or null outside a trace. */
export function activeTraceparent(): string | null {
  const sc = trace.getSpan(context.active())?.spanContext();
  if (!sc || !isSpanContextValid(sc)) return null;
  return `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & 1).toString(16)}`;
}

/**
 * Runs `fn` in a span named `name` (a child of the active span) with `attributes`, recording a
 * thrown error's type (never its message: it may quote the upstream's body) and ending it after.
 * Outside a trace, or with tracing off, it costs one no-op span.
 */
export async function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return trace.getTracer(TRACER_NAME).startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.name : 'error' });
      throw err;
    } finally {
      span.end();
    }
  });
}
