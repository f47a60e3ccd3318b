/** How a failed workflow start is classified and answered (api/workflow-start.ts). */
import { describe, expect, it } from 'vitest';
import { ServiceError, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { startFailureKind, startFailureResponse } from '../../api/workflow-start.js';
import type { LogFields, Logger } from '../../runtime/logger.js';

/** A gRPC status error as the client wraps it (`ServiceError` with the status error as `cause`). */
function grpcFailure(code: number): ServiceError {
  const status = Object.assign(new Error(`${code} status`), { code, details: 'detail', metadata: {} });
  return new ServiceError('Failed to start Workflow', { cause: status });
}

function recordingLogger() {
  const calls: Array<{ level: string; msg: string; fields: LogFields | undefined }> = [];
  const log: Logger = {
    debug: (msg, fields) => void calls.push({ level: 'debug', msg, fields }),
    info: (msg, fields) => void calls.push({ level: 'info', msg, fields }),
    warn: (msg, fields) => void calls.push({ level: 'warn', msg, fields }),
    error: (msg, fields) => void calls.push({ level: 'error', msg, fields }),
    child: () => log,
  };
  return { log, calls };
}

describe('startFailureKind', () => {
  it('calls UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED unavailable, other gRPC codes and other errors internal', () => {
    expect([14, 4, 8].map((c) => startFailureKind(grpcFailure(c)))).toEqual(['unavailable', 'unavailable', 'unavailable']);
    expect([3, 7, 13, 16].map((c) => startFailureKind(grpcFailure(c)))).toEqual(['internal', 'internal', 'internal', 'internal']);
    expect(startFailureKind(new TypeError('bad input'))).toBe('internal');
    expect(startFailureKind('not an error')).toBe('internal');
  });

  it('recognises an already-started workflow', () => {
    expect(startFailureKind(new WorkflowExecutionAlreadyStartedError('already started', 'chat-req_1', 'chatRequest'))).toBe('already_started');
  });
});

describe('startFailureResponse', () => {
  it('logs with the given IDs and answers 503 temporal_unavailable (Retry-After 1) or 500 internal_error', () => {
    const { log, calls } = recordingLogger();
    const down = startFailureResponse(grpcFailure(14), log, { request_id: 'req_1' }, 'request');
    expect(down).toMatchObject({ status: 503, type: 'service_unavailable', code: 'temporal_unavailable', retryAfterSeconds: 1 });
    const broken = startFailureResponse(new RangeError('secret detail'), log, { batch_id: 'batch_1' }, 'batch');
    expect(broken).toMatchObject({ status: 500, type: 'server_error', code: 'internal_error' });
    expect(broken?.message).not.toContain('secret detail');
    expect(calls).toEqual([
      { level: 'error', msg: 'could not start the request workflow', fields: expect.objectContaining({ request_id: 'req_1', kind: 'unavailable', grpc_code: 14 }) },
      { level: 'error', msg: 'could not start the batch workflow', fields: expect.objectContaining({ batch_id: 'batch_1', kind: 'internal', error: 'RangeError', detail: 'secret detail' }) },
    ]);
  });

  it('returns null for an already-started workflow (the caller carries on), logged as a warning', () => {
    const { log, calls } = recordingLogger();
    expect(startFailureResponse(new WorkflowExecutionAlreadyStartedError('already started', 'batch-b', 'batch'), log, { batch_id: 'b' }, 'batch')).toBeNull();
    expect(calls).toEqual([{ level: 'warn', msg: 'batch workflow already started', fields: expect.objectContaining({ batch_id: 'b', kind: 'already_started' }) }]);
  });
});
