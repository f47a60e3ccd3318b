/**
 * Webhook endpoints of a tenant (docs/webhooks.md): register (the `whsec_` secret is shown once),
 * list, retrieve, delete, rotate the secret (the old one keeps signing for a grace period), list
 * an endpoint's deliveries and replay one. A tenant admin sees its own tenant's endpoints, a
 * super admin all; another tenant's ID answers 404. Every change is audited, never with a secret.
 */
import { Router } from 'express';
import type { Client } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import type { WebhookEndpoint } from '../../db/tables/index.js';
import { appendAudit } from '../../db/repositories/audit.js';
import {
  createEndpoint, deleteEndpoint, getDelivery, getEndpoint, listDeliveries, listEndpoints, resetDelivery, rotateEndpointSecret,
} from '../../db/repositories/webhooks.js';
import { newWebhookSecret } from '../../activities/webhook-signing.js';
import { countWebhookEndpoints, lockTenantRow } from '../../db/repositories/tenant-holdings.js';
import { DEFAULT_TENANT_CAPS, type TenantCaps } from '../tenant-caps.js';
import { DEFAULT_WEBHOOK_CONFIG, startWebhookDelivery, webhookUrlProblem, type WebhookConfig } from '../../activities/webhooks.js';
import { webhookWorkflowId } from '../../contracts/ids.js';
import { WEBHOOK_EVENT_TYPES } from '../../contracts/webhooks.js';
import { authOf, requirePermission, tenantScope, type AuthContext } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';
import { MAX_PAGE, pageOf } from '../pagination.js';

/** Rotation grace period when the request names none: 24 h. */
const DEFAULT_GRACE_SECONDS = 86_400;
/** Longest rotation grace period: 7 days. */
const MAX_GRACE_SECONDS = 7 * 86_400;

function endpointJson(e: WebhookEndpoint) {
  return {
    id: e.id, object: 'webhook_endpoint', tenant_id: e.tenant_id, url: e.url, events: e.events, status: e.status,
    disabled_reason: e.disabled_reason, created_at: Math.floor(e.created_at.getTime() / 1000),
    previous_secret_expires_at: e.previous_secret_expires_at ? Math.floor(e.previous_secret_expires_at.getTime() / 1000) : null,
  };
}

export interface WebhookRouteDeps {
  db: Db;
  temporal: Client;
  /** @default DEFAULT_WEBHOOK_CONFIG */
  webhooks?: WebhookConfig;
  /** `maxWebhookEndpoints` per tenant (it also bounds an event's fan-out). @default DEFAULT_TENANT_CAPS */
  caps?: TenantCaps;
}

export function webhookRoutes(deps: WebhookRouteDeps): Router {
  const router = Router();
  const db = deps.db;
  const config = deps.webhooks ?? DEFAULT_WEBHOOK_CONFIG;
  const maxEndpoints = (deps.caps ?? DEFAULT_TENANT_CAPS).maxWebhookEndpoints;

  const audit = (auth: AuthContext, tenantId: string, action: string, target: string, data: Record<string, unknown>) =>
    appendAudit(db, { actor: `key:${auth.keyId}`, tenantId, action, target, data, idempotencyKey: null, at: new Date() });

  /** The endpoint `id` if the caller may see it; 404 otherwise. */
  async function ownEndpoint(auth: AuthContext, id: string): Promise<WebhookEndpoint> {
    const e = await getEndpoint(db, id);
    if (!e) throw notFound('Webhook endpoint');
    tenantScope(auth, e.tenant_id, 'Webhook endpoint');
    return e;
  }

  router.post('/admin/webhooks', requirePermission(deps, 'webhooks:write'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    const tenantId = auth.role === 'super_admin' ? b.tenant_id : auth.tenantId;
    if (typeof tenantId !== 'string' || tenantId === '') throw badRequest("'tenant_id' is required", 'tenant_id');
    if (typeof b.url !== 'string' || b.url.length > 2048) throw badRequest("'url' must be a URL of at most 2048 characters", 'url');
    const problem = webhookUrlProblem(b.url, config.allowPrivateHosts);
    if (problem !== null) throw badRequest(problem, 'url', 'invalid_url');
    if (!Array.isArray(b.events) || b.events.length === 0 || !b.events.every((t) => (WEBHOOK_EVENT_TYPES as readonly unknown[]).includes(t))) {
      throw badRequest(`'events' must be a non-empty list of ${WEBHOOK_EVENT_TYPES.join(', ')}`, 'events');
    }
    const secret = newWebhookSecret();
    let e: WebhookEndpoint;
    try {
      const url = b.url;
      e = await db.transaction().execute(async (trx) => {
        if (!(await lockTenantRow(trx, tenantId))) throw notFound('Tenant');
        const n = await countWebhookEndpoints(trx, tenantId);
        if (n >= maxEndpoints) {
          throw new HttpError('conflict_error', `The tenant already has ${n} webhook endpoints, the most allowed (${maxEndpoints}); delete one first`, 'webhook_endpoint_limit');
        }
        return createEndpoint(trx, { tenantId, url, events: [...new Set(b.events as string[])], secret });
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23503') throw notFound('Tenant'); // foreign key: no such tenant
      throw err;
    }
    await audit(auth, tenantId, 'webhook.create', `webhook:${e.id}`, { after: endpointJson(e) });
    res.status(201).json({ ...endpointJson(e), secret });
  });

  router.get('/admin/webhooks', requirePermission(deps, 'webhooks:read'), async (req, res) => {
    const auth = authOf(req);
    const rows = await listEndpoints(db, auth.role === 'super_admin' ? null : auth.tenantId ?? '');
    res.json({ object: 'list', data: rows.map(endpointJson), has_more: false });
  });

  router.get('/admin/webhooks/:id', requirePermission(deps, 'webhooks:read'), async (req, res) => {
    res.json(endpointJson(await ownEndpoint(authOf(req), String(req.params.id))));
  });

  router.delete('/admin/webhooks/:id', requirePermission(deps, 'webhooks:write'), async (req, res) => {
    const auth = authOf(req);
    const e = await ownEndpoint(auth, String(req.params.id));
    await deleteEndpoint(db, e.id);
    await audit(auth, e.tenant_id, 'webhook.delete', `webhook:${e.id}`, { before: endpointJson(e) });
    res.json({ id: e.id, object: 'webhook_endpoint.deleted', deleted: true });
  });

  /** New secret, shown once; the old one keeps signing (a second `v1,` signature) for `grace_seconds`. */
  router.post('/admin/webhooks/:id/rotate', requirePermission(deps, 'webhooks:write'), async (req, res) => {
    const auth = authOf(req);
    const e = await ownEndpoint(auth, String(req.params.id));
    const b = (req.body ?? {}) as Record<string, unknown>;
    const grace = b.grace_seconds ?? DEFAULT_GRACE_SECONDS;
    if (typeof grace !== 'number' || !Number.isInteger(grace) || grace < 0 || grace > MAX_GRACE_SECONDS) {
      throw badRequest(`'grace_seconds' must be an integer from 0 to ${MAX_GRACE_SECONDS}`, 'grace_seconds');
    }
    const secret = newWebhookSecret();
    const rotated = await rotateEndpointSecret(db, e.id, secret, new Date(Date.now() + grace * 1000));
    if (!rotated) throw notFound('Webhook endpoint');
    await audit(auth, e.tenant_id, 'webhook.rotate', `webhook:${e.id}`, { grace_seconds: grace });
    res.json({ ...endpointJson(rotated), secret });
  });

  router.get('/admin/webhooks/:id/deliveries', requirePermission(deps, 'webhooks:read'), async (req, res) => {
    const e = await ownEndpoint(authOf(req), String(req.params.id));
    const { limit } = pageOf(req);
    const rows = await listDeliveries(db, e.id, Math.min(limit, MAX_PAGE));
    res.json({
      object: 'list',
      data: rows.map((d) => ({
        id: d.id, object: 'webhook_delivery', endpoint_id: d.endpoint_id, event_id: d.event_id, event_type: d.event_type, status: d.status,
        attempts: d.attempts, last_status_code: d.last_status_code, last_error: d.last_error,
        created_at: Math.floor(d.created_at.getTime() / 1000), delivered_at: d.delivered_at ? Math.floor(d.delivered_at.getTime() / 1000) : null,
      })),
      has_more: false,
    });
  });

  /** Sends a delivery again (same event ID and body, fresh timestamp and signature). */
  router.post('/admin/webhooks/deliveries/:id/replay', requirePermission(deps, 'webhooks:write'), async (req, res) => {
    const auth = authOf(req);
    const d = await getDelivery(db, String(req.params.id));
    if (!d) throw notFound('Webhook delivery');
    tenantScope(auth, d.tenant_id, 'Webhook delivery');
    const e = await getEndpoint(db, d.endpoint_id);
    if (!e || e.status !== 'active') throw new HttpError('conflict_error', 'The endpoint is disabled; register it again to receive events', 'endpoint_disabled');
    const previous = d.status;
    const inProgress = () => new HttpError('conflict_error', 'This delivery is still being attempted', 'delivery_in_progress');
    // A delivery recorded as finished may still have its workflow closing for a few milliseconds:
    // let it close (bounded) before starting the replay under the same workflow ID.
    const current = deps.temporal.workflow.getHandle(webhookWorkflowId(d.event_id, d.endpoint_id));
    const running = await current.describe().then((x) => x.status.name === 'RUNNING', () => false);
    if (running) {
      if (d.status === 'pending') throw inProgress();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([current.result().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
    }
    await resetDelivery(db, d.id);
    // Refused only when another delivery of it started meanwhile (a concurrent replay): `pending` is true then.
    if (!(await startWebhookDelivery(deps.temporal, d, config.retry, true))) throw inProgress();
    await audit(auth, d.tenant_id, 'webhook.replay', `webhook_delivery:${d.id}`, { endpoint_id: d.endpoint_id, event_id: d.event_id, previous_status: previous });
    res.status(202).json({ id: d.id, object: 'webhook_delivery', status: 'pending' });
  });

  return router;
}
