/** The API's one error type and its middleware: OpenAI's error shape, right statuses, nothing leaked. */
import type { NextFunction, Request, Response } from 'express';
import { describe, expect, it } from 'vitest';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { ERROR_STATUS, HttpError, badRequest, errorMiddleware, fromWorkflowFailure, notFound, requestId } from '../../api/errors.js';
import type { LogFields, Logger } from '../../runtime/logger.js';

interface LogCall {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  fields: LogFields | undefined;
}

function recordingLogger(calls: LogCall[] = []): Logger & { calls: LogCall[] } {
  const log = {
    calls,
    debug: (msg: string, fields?: LogFields) => void calls.push({ level: 'debug', msg, fields }),
    info: (msg: string, fields?: LogFields) => void calls.push({ level: 'info', msg, fields }),
    warn: (msg: string, fields?: LogFields) => void calls.push({ level: 'warn', msg, fields }),
    error: (msg: string, fields?: LogFields) => void calls.push({ level: 'error', msg, fields }),
    child: () => log,
  };
  return log;
}

interface FakeResponse {
  statusCode: number | null;
  headers: Record<string, string>;
  body: unknown;
}

/** Runs the middleware on `err` with a fake request and response; returns what was answered and logged. */
function handle(err: unknown): FakeResponse & { logs: LogCall[]; nextCalled: boolean } {
  const log = recordingLogger();
  const out: FakeResponse = { statusCode: null, headers: {}, body: undefined };
  const res = {
    setHeader(name: string, value: string) {
      out.headers[name.toLowerCase()] = value;
      return res;
    },
    status(code: number) {
      out.statusCode = code;
      return res;
    },
    json(body: unknown) {
      // What goes on the wire: JSON.stringify honours toJSON, as Express's res.json does.
      out.body = JSON.parse(JSON.stringify(body));
      return res;
    },
  };
  const req = { method: 'POST', route: { path: '/v1/chat/completions' }, headers: {} };
  let nextCalled = false;
  const next: NextFunction = () => {
    nextCalled = true;
  };
  errorMiddleware(log)(err, req as unknown as Request, res as unknown as Response, next);
  return { ...out, logs: log.calls, nextCalled };
}

describe('HttpError', () => {
  it('serialises to the OpenAI error shape', () => {
    const e = new HttpError('invalid_request_error', "'model' is required", 'missing_required_parameter', 'model');
    expect(e.toJSON()).toEqual({
      error: { message: "'model' is required", type: 'invalid_request_error', param: 'model', code: 'missing_required_parameter' },
    });
    expect(JSON.parse(JSON.stringify(e))).toEqual(e.toJSON());
  });

  it('uses null for an absent code and param', () => {
    expect(new HttpError('server_error', 'boom').toJSON()).toEqual({ error: { message: 'boom', type: 'server_error', param: null, code: null } });
  });

  it('takes its status from the closed table', () => {
    for (const [type, status] of Object.entries(ERROR_STATUS)) {
      expect(new HttpError(type as keyof typeof ERROR_STATUS, 'm').status).toBe(status);
    }
    expect(new HttpError('rate_limit_error', 'slow down').status).toBe(429);
  });

  it('is an Error with its own name', () => {
    const e = new HttpError('not_found_error', 'x');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('HttpError');
  });

  it('has helpers for 400 and 404', () => {
    const b = badRequest('bad', 'messages', 'invalid_value');
    expect([b.status, b.type, b.param, b.code]).toEqual([400, 'invalid_request_error', 'messages', 'invalid_value']);
    const n = notFound('Batch');
    expect([n.status, n.message, n.code]).toEqual([404, 'Batch not found', 'not_found']);
  });
});

describe('errorMiddleware', () => {
  it('answers an HttpError with its status and body', () => {
    const e = badRequest("'stop' must be a string", 'stop', 'invalid_type');
    const r = handle(e);
    expect(r.statusCode).toBe(400);
    expect(r.body).toEqual(e.toJSON());
    expect(r.headers['retry-after']).toBeUndefined();
    expect(r.logs).toEqual([]);
    expect(r.nextCalled).toBe(false);
  });

  it('sets Retry-After when the error carries it', () => {
    const r = handle(new HttpError('rate_limit_error', 'Rate limit reached', 'rate_limit_exceeded', null, 17));
    expect(r.statusCode).toBe(429);
    expect(r.headers['retry-after']).toBe('17');
    expect(r.body).toEqual({ error: { message: 'Rate limit reached', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' } });
  });

  it('asks for a bearer token on 401', () => {
    const r = handle(new HttpError('authentication_error', 'Invalid API key', 'invalid_api_key'));
    expect(r.statusCode).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer');
  });

  it('answers a body that is too large with 413', () => {
    const err = Object.assign(new Error('request entity too large'), { type: 'entity.too.large', status: 413, expose: true });
    const r = handle(err);
    expect(r.statusCode).toBe(413);
    expect(r.body).toMatchObject({ error: { type: 'request_too_large', code: 'request_too_large' } });
  });

  it('answers unparseable JSON with 400', () => {
    const err = Object.assign(new SyntaxError('Unexpected token } in JSON at position 9'), { type: 'entity.parse.failed', status: 400, expose: true });
    const r = handle(err);
    expect(r.statusCode).toBe(400);
    expect(r.body).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_json', param: null } });
  });

  it('answers an exposed 4xx from Express with its status', () => {
    const err = Object.assign(new Error('Not Found'), { status: 404, expose: true });
    const r = handle(err);
    expect(r.statusCode).toBe(404);
    expect(r.body).toMatchObject({ error: { type: 'not_found_error', message: 'Not Found' } });
  });

  it('answers an unknown error with a generic 500 that leaks nothing, and logs it', () => {
    const secret = 'connect ECONNREFUSED postgres://sluice:hunter2@db:5432/sluice';
    const r = handle(new Error(secret));
    expect(r.statusCode).toBe(500);
    expect(r.body).toMatchObject({ error: { type: 'server_error', code: 'internal_error', param: null } });
    const text = JSON.stringify(r.body);
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('ECONNREFUSED');
    expect(r.logs).toHaveLength(1);
    expect(r.logs[0]?.level).toBe('error');
    expect(r.logs[0]?.fields).toMatchObject({ method: 'POST', route: '/v1/chat/completions', error: 'Error', detail: secret });
  });

  it('does not trust a status on an unexposed error', () => {
    const r = handle(Object.assign(new Error('internal detail'), { status: 400, expose: false }));
    expect(r.statusCode).toBe(500);
    expect(JSON.stringify(r.body)).not.toContain('internal detail');
  });

  it('answers a thrown non-Error with 500', () => {
    const r = handle('just a string');
    expect(r.statusCode).toBe(500);
    expect(JSON.stringify(r.body)).not.toContain('just a string');
    expect(r.logs).toHaveLength(1);
  });

  it('maps a workflow’s typed failure to its status, details and Retry-After', () => {
    const failure = ApplicationFailure.create({
      type: 'QuotaExceeded',
      message: 'Tokens per minute exceeded',
      nonRetryable: true,
      details: [{ code: 'rate_limit_exceeded', param: null, retryAfterSeconds: 12 }],
    });
    const r = handle(new WorkflowFailedError('Workflow execution failed', failure, 'NON_RETRYABLE_FAILURE'));
    expect(r.statusCode).toBe(429);
    expect(r.headers['retry-after']).toBe('12');
    expect(r.body).toEqual({ error: { message: 'Tokens per minute exceeded', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' } });
  });
});

describe('fromWorkflowFailure', () => {
  it('is null for anything but a WorkflowFailedError', () => {
    expect(fromWorkflowFailure(new Error('x'))).toBeNull();
    expect(fromWorkflowFailure(ApplicationFailure.create({ type: 'BadRequest', message: 'x' }))).toBeNull();
  });

  it('maps each closed failure type to its status', () => {
    const cases = [
      ['Unauthorized', 401], ['PermissionDenied', 403], ['NotFound', 404], ['BadRequest', 400],
      ['ContextLengthExceeded', 400], ['QuotaExceeded', 429], ['NoDeploymentAvailable', 503], ['InternalError', 500],
      ['SomethingNew', 500],
    ] as const;
    for (const [type, status] of cases) {
      const e = fromWorkflowFailure(new WorkflowFailedError('failed', ApplicationFailure.create({ type, message: type }), 'NON_RETRYABLE_FAILURE'));
      expect(e?.status, type).toBe(status);
    }
  });

  it('maps a cancelled workflow to 409 and a non-application cause to a generic 500', () => {
    expect(fromWorkflowFailure(new WorkflowFailedError('failed', new CancelledFailure('cancelled'), 'CANCEL_REQUESTED'))?.status).toBe(409);
    const e = fromWorkflowFailure(new WorkflowFailedError('failed', new Error('secret detail'), 'NON_RETRYABLE_FAILURE'));
    expect(e?.status).toBe(500);
    expect(e?.message).not.toContain('secret detail');
  });
});

describe('internal details of a workflow failure', () => {
  it('answer a safe message and log the raw one with the request ID', () => {
    const failure = ApplicationFailure.create({
      type: 'NoDeploymentAvailable', message: 'no deployment of m could serve the request: connect ECONNREFUSED 10.1.2.3:8000 (vllm-7.internal)',
      nonRetryable: true, details: [{ code: 'model_unavailable', param: null, retryAfterSeconds: 5 }],
    });
    const r = handle(new WorkflowFailedError('failed', failure, 'NON_RETRYABLE_FAILURE'));
    expect(r.statusCode).toBe(503);
    expect(JSON.stringify(r.body)).not.toMatch(/10\.1\.2\.3|vllm-7|ECONNREFUSED/);
    expect(r.body).toMatchObject({ error: { code: 'model_unavailable', type: 'service_unavailable' } });
    const logged = r.logs.find((l) => l.msg === 'request failed');
    expect(String(logged?.fields?.detail)).toContain('vllm-7.internal');
  });

  it('give a database error no message of its own', () => {
    const failure = ApplicationFailure.create({ type: 'DatabaseError', message: 'relation "usage" does not exist at pg-1.internal' });
    const e = fromWorkflowFailure(new WorkflowFailedError('failed', failure, 'NON_RETRYABLE_FAILURE'));
    expect(e?.status).toBe(500);
    expect(e?.code).toBe('internal_error');
    expect(e?.message).not.toContain('pg-1');
  });
});

describe('requestId', () => {
  function run(given: string | undefined) {
    const headers: Record<string, string> = {};
    const res = { locals: {} as Record<string, unknown>, setHeader: (n: string, v: string) => void (headers[n] = v) };
    const req = { get: (n: string) => (n.toLowerCase() === 'x-request-id' ? given : undefined) };
    let called = false;
    requestId()(req as unknown as Request, res as unknown as Response, () => void (called = true));
    return { header: headers['x-request-id'], local: res.locals.requestId, called };
  }

  it('keeps a plain caller ID and replaces anything else', () => {
    expect(run('trace-1:a.b')).toEqual({ header: 'trace-1:a.b', local: 'trace-1:a.b', called: true });
    const replaced = run('bad id\r\nx: y');
    expect(replaced.header).toMatch(/^reqid_[0-9a-f]{32}$/);
    expect(run(undefined).header).toMatch(/^reqid_/);
  });
});
