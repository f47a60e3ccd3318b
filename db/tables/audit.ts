/** The audit log: an append-only, hash-chained sequence, its head, and signed checkpoints of it. */
import type { ColumnType, Selectable } from 'kysely';
import type { CreatedAt, Timestamp } from './columns.js';

export interface AuditLogTable {
  seq: number;
  created_at: Timestamp;
  actor: string;
  tenant_id: string | null;
  action: string;
  target: string | null;
  data: ColumnType<Record<string, unknown>, string, never>;
  idempotency_key: string | null;
  prev_hash: string;
  hash: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

/** A checkpoint of the audit chain: its head at `seq`, HMAC-signed when a key is configured. */
export interface AuditCheckpointsTable {
  seq: number;
  head_hash: string;
  signature: string | null;
  created_at: CreatedAt;
}

/** The audit tables of `Database`. */
export interface AuditTables {
  audit_log: AuditLogTable;
  audit_head: AuditHeadTable;
  audit_checkpoints: AuditCheckpointsTable;
}

export type AuditRow = Selectable<AuditLogTable>;
