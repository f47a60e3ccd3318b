/**
 * Traces' configuration from the standard `OTEL_*` variables (off by default), and what an
 * activity's input or result may put on a span (identifiers and counts, never text).
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../runtime/config.js';
import { spanAttributesOf } from '../../runtime/tracing.js';

describe('tracing config', () => {
  it('is off without an exporter or endpoint, with OTEL_TRACES_EXPORTER=none, and with OTEL_SDK_DISABLED', () => {
    expect(loadConfig({}).tracing).toBeNull();
    expect(loadConfig({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }).tracing).toBeNull();
    expect(loadConfig({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).tracing).toBeNull();
    expect(loadConfig({ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }).tracing).toBeNull();
  });

  it('OTEL_TRACES_EXPORTER=otlp turns it on with the specification defaults', () => {
    expect(loadConfig({ OTEL_TRACES_EXPORTER: 'otlp' }).tracing).toEqual({
      serviceName: 'sluice', endpoint: 'http://localhost:4318/v1/traces', headers: {}, timeoutMs: 10_000,
      sampler: { name: 'parentbased_always_on', ratio: 1 }, dbQueries: true,
    });
  });

  it('an endpoint turns it on: the base endpoint gets /v1/traces, the traces endpoint is used as given', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector:4318/' }).tracing?.endpoint).toBe('https://collector:4318/v1/traces');
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://b/custom' }).tracing?.endpoint).toBe('https://b/custom');
  });

  it('reads service name, headers (URL-decoded; the traces list wins), timeout and sampler', () => {
    const t = loadConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SERVICE_NAME: 'sluice-eu',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-ignored=1', OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'authorization=Bearer%20abc, x-team = infra',
      OTEL_EXPORTER_OTLP_TIMEOUT: '2500', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25',
      SLUICE_TRACE_DB_QUERIES: 'false',
    }).tracing;
    expect(t).toEqual({
      serviceName: 'sluice-eu', endpoint: 'http://c:4318/v1/traces', headers: { authorization: 'Bearer abc', 'x-team': 'infra' },
      timeoutMs: 2500, sampler: { name: 'parentbased_traceidratio', ratio: 0.25 }, dbQueries: false,
    });
  });

  it('refuses what it cannot honour, naming the variable', () => {
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{ OTEL_TRACES_EXPORTER: 'zipkin' }, /OTEL_TRACES_EXPORTER/],
      [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, /OTEL_EXPORTER_OTLP_PROTOCOL/],
      [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }, /OTEL_EXPORTER_OTLP_TRACES_PROTOCOL/],
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://c' }, /OTEL_EXPORTER_OTLP_ENDPOINT/],
      [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'not a url' }, /OTEL_EXPORTER_OTLP_TRACES_ENDPOINT/],
      [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER: 'sometimes' }, /OTEL_TRACES_SAMPLER/],
      [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_TRACES_SAMPLER_ARG: '1.5' }, /OTEL_TRACES_SAMPLER_ARG/],
      [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_HEADERS: 'no-equals-sign' }, /OTEL_EXPORTER_OTLP_HEADERS/],
      [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_HEADERS: 'a=%E0%A4%A' }, /OTEL_EXPORTER_OTLP_HEADERS/],
      [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TIMEOUT: '0' }, /OTEL_EXPORTER_OTLP_TIMEOUT/],
      [{ OTEL_SDK_DISABLED: 'maybe' }, /OTEL_SDK_DISABLED/],
    ];
    for (const [env, message] of bad) {
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(ConfigError);
      expect(() => loadConfig(env), JSON.stringify(env)).toThrow(message);
    }
  });

  it('never puts a header value (a collector token) in the error message', () => {
    expect(() => loadConfig({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_HEADERS: 'authorization=%E0%A4%A-secret-token' })).toThrow(/^(?!.*secret-token).*$/s);
  });
});

describe('span attributes of an activity', () => {
  it('takes identifiers and counts, a deployment\'s id, pool and provider, and the nested settle/assignment fields', () => {
    expect(spanAttributesOf({
      requestId: 'req_1', tenantId: 'ten_1', model: 'm', keyId: 'key_1', subject: 'user-42',
      deployment: { id: 'd1', pool: 'gpu', provider: 'llama-cpp', baseUrl: 'https://up', apiKeyRef: 'REF', model: 'm' },
      settle: { variant: 'b', promptTokens: 3, completionTokens: 4, deploymentId: 'd1' },
    })).toEqual({
      'sluice.request_id': 'req_1', 'sluice.tenant_id': 'ten_1', 'sluice.model': 'm',
      'sluice.deployment': 'd1', 'sluice.pool': 'gpu', 'sluice.provider': 'llama-cpp', 'sluice.variant': 'b',
      'gen_ai.usage.input_tokens': 3, 'gen_ai.usage.output_tokens': 4,
    });
  });

  it('never reads messages, content, parameters, keys or anything not on its list', () => {
    const secret = 'PROMPT-OR-KEY-TEXT';
    const attrs = spanAttributesOf({
      messages: [{ role: 'user', content: secret }], content: secret, params: { stop: [secret] }, apiKey: secret,
      keyId: secret, subject: secret, extras: { model: secret },
      deployment: { baseUrl: secret, apiKeyRef: secret, upstreamModel: secret },
      assignment: { overrides: { model: secret } }, outcome: { error: { message: secret } },
      lines: [{ requestId: secret }],
    });
    expect(JSON.stringify(attrs)).not.toContain(secret);
    expect(spanAttributesOf(null)).toEqual({});
    expect(spanAttributesOf([{ requestId: 'x' }])).toEqual({});
    expect(spanAttributesOf({ requestId: 'x'.repeat(201), promptTokens: Number.NaN })).toEqual({});
  });
});
