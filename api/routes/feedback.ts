/**
 * `POST /v1/feedback`: feedback on a completion, for experiments' results. The body names the
 * completion (`completion_id`: a chat completion's `chatcmpl-…`, a streamed one's (the same), a
 * legacy completion's `cmpl-…`, a batch line's request ID `batch_req_…`, a response's or any
 * request's own ID), a `metric` and exactly one of `value` (boolean: thumbs), `score` (a number)
 * or `comment` (text). Stored per tenant, one per (completion, metric): the same body again
 * answers the same; a different value replaces the stored one (last write wins: a user may change
 * their mind). The key that made the request may send it, or any key of its tenant with
 * `feedback:write`; a completion of another tenant (or an operator key) is 404.
 */
import { Router } from 'express';
import type { Db } from '../../db/database.js';
import type { FeedbackRow } from '../../db/tables/index.js';
import { getRequest } from '../../db/repositories/requests.js';
import { upsertFeedback, type FeedbackValue } from '../../db/repositories/feedback.js';
import { allows } from '../../domain/policy.js';
import { isObject } from '../../domain/is-object.js';
import { authOf } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';

const FIELDS = ['completion_id', 'metric', 'value', 'score', 'comment'] as const;
/** The longest comment kept, in characters. */
export const MAX_FEEDBACK_COMMENT = 4096;
/** Scores are finite numbers within ±1e9 (a rating, a grade, a latency judgement: not an amount). */
const MAX_SCORE = 1e9;
const METRIC = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The request ID a completion ID names (its prefix stripped), or null when it cannot be one. */
export function requestIdOf(completionId: string): string | null {
  const id = completionId.replace(/^chatcmpl-/, '').replace(/^cmpl-(?=cmpl_)/, '');
  return /^[A-Za-z0-9_-]{1,128}$/.test(id) ? id : null;
}

function feedbackJson(completionId: string, r: FeedbackRow) {
  return {
    object: 'feedback' as const, id: r.id, completion_id: completionId, request_id: r.request_id, metric: r.metric, kind: r.kind,
    value: r.value_bool, score: r.value_num, comment: r.comment,
    created_at: r.created_at.toISOString(), updated_at: r.updated_at.toISOString(),
  };
}

export function feedbackRoutes(deps: { db: Db }): Router {
  const router = Router();
  router.post('/feedback', async (req, res) => {
    const auth = authOf(req);
    const b: unknown = req.body;
    if (!isObject(b)) throw badRequest('The body must be a JSON object');
    for (const k of Object.keys(b)) if (!(FIELDS as readonly string[]).includes(k)) throw badRequest(`Unknown field '${k}'`, k, 'unknown_parameter');
    if (typeof b.completion_id !== 'string' || b.completion_id === '') throw badRequest("'completion_id' is required", 'completion_id', 'invalid_type');
    if (typeof b.metric !== 'string' || !METRIC.test(b.metric)) throw badRequest("'metric' must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}", 'metric', 'invalid_value');
    const given = (['value', 'score', 'comment'] as const).filter((k) => b[k] !== undefined && b[k] !== null);
    if (given.length !== 1) throw badRequest("Exactly one of 'value', 'score' or 'comment' is required", given[1] ?? 'value', 'invalid_value');
    let v: FeedbackValue;
    if (given[0] === 'value') {
      if (typeof b.value !== 'boolean') throw badRequest("'value' must be a boolean", 'value', 'invalid_type');
      v = { kind: 'boolean', valueBool: b.value, valueNum: null, comment: null };
    } else if (given[0] === 'score') {
      if (typeof b.score !== 'number' || !Number.isFinite(b.score)) throw badRequest("'score' must be a finite number", 'score', 'invalid_type');
      if (Math.abs(b.score) > MAX_SCORE) throw badRequest(`'score' must be between -${MAX_SCORE} and ${MAX_SCORE}`, 'score', 'invalid_value');
      v = { kind: 'score', valueBool: null, valueNum: b.score, comment: null };
    } else {
      if (typeof b.comment !== 'string' || b.comment.trim() === '') throw badRequest("'comment' must be a non-empty string", 'comment', 'invalid_type');
      if (b.comment.length > MAX_FEEDBACK_COMMENT) throw badRequest(`'comment' may have at most ${MAX_FEEDBACK_COMMENT} characters`, 'comment', 'invalid_value');
      v = { kind: 'comment', valueBool: null, valueNum: null, comment: b.comment };
    }
    const requestId = requestIdOf(b.completion_id);
    // Another tenant's completion, an operator's key (no tenant), or no such request: the same 404.
    const request = requestId === null || auth.tenantId === null ? null : await getRequest(deps.db, requestId, auth.tenantId);
    if (!request) throw notFound('Completion');
    if (request.key_id !== auth.keyId && !allows(auth.role, auth.scopes, 'feedback:write')) {
      throw new HttpError('permission_error', "Only the key that made the request, or a key with 'feedback:write', may send feedback on it", 'permission_denied');
    }
    const { row, outcome } = await upsertFeedback(deps.db, { tenantId: auth.tenantId as string, requestId: request.id, keyId: auth.keyId, metric: b.metric, ...v });
    res.status(outcome === 'created' ? 201 : 200).json(feedbackJson(b.completion_id, row));
  });
  return router;
}
