/**
 * Webhook endpoints, events and deliveries. An event's body is stored once, so every attempt and
 * every replay sends the same bytes; a delivery is unique per (event, endpoint).
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { WebhookDelivery, WebhookEndpoint, WebhookEvent } from '../tables/index.js';
import { newId } from '../../domain/ids.js';

export interface NewEndpoint {
  tenantId: string;
  url: string;
  events: string[];
  secret: string;
}

export async function createEndpoint(db: Db, e: NewEndpoint): Promise<WebhookEndpoint> {
  return db
    .insertInto('webhook_endpoints')
    .values({ id: newId('we'), tenant_id: e.tenantId, url: e.url, events: e.events, secret: e.secret, disabled_reason: null })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Endpoints of one tenant, or of all (`null`, super admin), newest first. */
export async function listEndpoints(db: Db, tenantId: string | null): Promise<WebhookEndpoint[]> {
  let q = db.selectFrom('webhook_endpoints').selectAll().orderBy('created_at', 'desc');
  if (tenantId !== null) q = q.where('tenant_id', '=', tenantId);
  return q.execute();
}

export async function getEndpoint(db: Db, id: string): Promise<WebhookEndpoint | undefined> {
  return db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Deletes an endpoint and (cascade) its deliveries. */
export async function deleteEndpoint(db: Db, id: string): Promise<boolean> {
  const r = await db.deleteFrom('webhook_endpoints').where('id', '=', id).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

/** Replaces the secret; the old one keeps signing (a second signature) until `graceUntil`. */
export async function rotateEndpointSecret(db: Db, id: string, secret: string, graceUntil: Date): Promise<WebhookEndpoint | undefined> {
  return db
    .updateTable('webhook_endpoints')
    .set({ previous_secret: sql`secret`, previous_secret_expires_at: graceUntil, secret, updated_at: new Date() })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

export async function disableEndpoint(db: Db, id: string, reason: string): Promise<void> {
  await db
    .updateTable('webhook_endpoints')
    .set({ status: 'disabled', disabled_reason: reason, updated_at: new Date() })
    .where('id', '=', id)
    .where('status', '=', 'active')
    .execute();
}

/** Stores an event once (its ID is derived from what happened, so a retried emit inserts nothing). */
export async function insertEvent(db: Db, e: { id: string; tenantId: string; type: string; body: string }): Promise<void> {
  await db
    .insertInto('webhook_events')
    .values({ id: e.id, tenant_id: e.tenantId, type: e.type, body: e.body })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
}

export async function getEvent(db: Db, id: string): Promise<WebhookEvent | undefined> {
  return db.selectFrom('webhook_events').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Active endpoints of a tenant subscribed to `type`. */
export async function subscribedEndpoints(db: Db, tenantId: string, type: string): Promise<WebhookEndpoint[]> {
  return db
    .selectFrom('webhook_endpoints')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('status', '=', 'active')
    .where(sql<boolean>`${type} = any(events)`)
    .execute();
}

/** The delivery of an event to an endpoint, created on first call. */
export async function ensureDelivery(db: Db, eventId: string, endpoint: Pick<WebhookEndpoint, 'id' | 'tenant_id'>): Promise<WebhookDelivery> {
  await db
    .insertInto('webhook_deliveries')
    .values({ id: newId('whd'), event_id: eventId, endpoint_id: endpoint.id, tenant_id: endpoint.tenant_id, last_status_code: null, last_error: null, delivered_at: null })
    .onConflict((oc) => oc.columns(['event_id', 'endpoint_id']).doNothing())
    .execute();
  return db
    .selectFrom('webhook_deliveries')
    .selectAll()
    .where('event_id', '=', eventId)
    .where('endpoint_id', '=', endpoint.id)
    .executeTakeFirstOrThrow();
}

export async function getDelivery(db: Db, id: string): Promise<WebhookDelivery | undefined> {
  return db.selectFrom('webhook_deliveries').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Deliveries to one endpoint, newest first, with the event type. */
export async function listDeliveries(db: Db, endpointId: string, limit: number) {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_events as e', 'e.id', 'd.event_id')
    .selectAll('d')
    .select('e.type as event_type')
    .where('d.endpoint_id', '=', endpointId)
    .orderBy('d.created_at', 'desc')
    .limit(limit)
    .execute();
}

/** Records one attempt's outcome; `final` sets the delivery's end state. */
export async function recordAttempt(
  db: Db,
  id: string,
  a: { statusCode: number | null; error: string | null; final: 'succeeded' | 'failed' | null },
): Promise<void> {
  await db
    .updateTable('webhook_deliveries')
    .set({
      attempts: sql`attempts + 1`,
      last_status_code: a.statusCode,
      last_error: a.error,
      updated_at: new Date(),
      ...(a.final ? { status: a.final } : {}),
      ...(a.final === 'succeeded' ? { delivered_at: new Date() } : {}),
    })
    .where('id', '=', id)
    .execute();
}

/** Sets a delivery's end state without counting an attempt (gave up, endpoint gone). */
export async function finishDelivery(db: Db, id: string, status: 'succeeded' | 'failed', error: string | null): Promise<void> {
  await db
    .updateTable('webhook_deliveries')
    .set({ status, updated_at: new Date(), ...(error !== null ? { last_error: error } : {}) })
    .where('id', '=', id)
    .execute();
}

/** Puts a delivery back to `pending` for a replay. */
export async function resetDelivery(db: Db, id: string): Promise<void> {
  await db.updateTable('webhook_deliveries').set({ status: 'pending', updated_at: new Date() }).where('id', '=', id).execute();
}
