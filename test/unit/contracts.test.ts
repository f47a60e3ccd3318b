import { describe, expect, it } from 'vitest';
import { batchRequestId, batchWorkflowId, chatWorkflowId, requestWorkflowId } from '../../contracts/ids.js';

describe('requestWorkflowId', () => {
  it('is the request’s own workflow for sync and async requests', () => {
    expect(requestWorkflowId('req_abc123')).toBe(chatWorkflowId('req_abc123'));
    expect(requestWorkflowId('req_abc123')).toBe('chat-req_abc123');
    // A legacy completion holds its reservation in its own completionRequest workflow.
    expect(requestWorkflowId('cmpl_abc123')).toBe('completion-cmpl_abc123');
  });

  it('is the batch’s workflow for a batch line, whatever the batch ID holds', () => {
    for (const batchId of ['batch_0123abcd', 'batch_expiry1700000000000', 'batch_with_underscores_7']) {
      for (const line of [1, 2, 50_000]) {
        expect(requestWorkflowId(batchRequestId(batchId, line))).toBe(batchWorkflowId(batchId));
      }
    }
  });
});
