/** `sluice audit list|verify`. */
import { intOpt, type CommandSpec } from './args.js';
import { formatTime, printList } from './format.js';
import type { Handlers, ListJson } from './http.js';

export type AuditAction = { kind: 'audit.list'; limit: number | null; before: number | null } | { kind: 'audit.verify'; full: boolean };

export const auditCommands: readonly CommandSpec<AuditAction>[] = [
  {
    path: ['audit', 'list'],
    synopsis: '[--limit N] [--before SEQ]',
    summary: 'latest audit log entries, newest first',
    options: {
      limit: { type: 'string', arg: 'N', help: 'how many, 1-100 (default 20)' },
      before: { type: 'string', arg: 'SEQ', help: 'entries older than this sequence number' },
    },
    args: [],
    build: (v) => ({ kind: 'audit.list', limit: intOpt(v, 'limit', 1) ?? null, before: intOpt(v, 'before', 1) ?? null }),
  },
  {
    path: ['audit', 'verify'],
    synopsis: '[--full]',
    summary: 'check the hash chain of the audit log from its latest signed checkpoint; exit code 1 if it is broken',
    options: { full: { type: 'boolean', help: 'rehash the whole chain (super admin only)' } },
    args: [],
    build: (v) => ({ kind: 'audit.verify', full: v.full === true }),
  },
];

interface AuditRowJson {
  seq: number;
  created_at: string;
  actor: string;
  tenant_id: string | null;
  action: string;
  target: string;
}

/** `GET /v1/admin/audit/verify`: 200 when intact, 409 when broken. */
interface AuditVerificationJson {
  object: 'audit_verification';
  ok: boolean;
  rows: number;
  head_seq?: number;
  head_hash?: string;
  /** Whether the whole chain was checked (`full`) or the rows after the latest checkpoint. */
  mode?: string;
  /** False when the rows after the checkpoint were more than one call checks. */
  complete?: boolean;
  checkpoint_status?: 'missing' | 'stale' | 'fresh';
  unprotected_rows?: number;
  first_bad_seq?: number;
  reason?: string;
}

export const auditHandlers: Handlers<AuditAction> = {
  'audit.list': {
    request: (a) => ({ method: 'GET', path: '/v1/admin/audit', query: { limit: a.limit, before: a.before } }),
    render(body, _a, { out }) {
      const list = body as ListJson<AuditRowJson>;
      printList(list.data, out, 'No audit entries.', ['SEQ', 'TIME', 'ACTOR', 'TENANT', 'ACTION', 'TARGET'], (r) => [
        String(r.seq), formatTime(r.created_at), r.actor, r.tenant_id ?? '-', r.action, r.target,
      ]);
      const last = list.data.at(-1);
      if (list.has_more && last) out(`Older entries: --before ${last.seq}`);
    },
  },
  'audit.verify': {
    request: (a) => ({ method: 'GET', path: '/v1/admin/audit/verify', query: a.full ? { full: 'true' } : {} }),
    resultStatuses: [409],
    exitCode: (body) => ((body as AuditVerificationJson).ok ? 0 : 1),
    render(body, _a, { out }) {
      const v = body as AuditVerificationJson;
      if (v.ok) {
        out(`Audit chain OK: ${v.rows} entries verified, head at seq ${v.head_seq ?? '?'} (hash ${(v.head_hash ?? '?').slice(0, 16)}…).`);
        if (v.complete === false) out('Only part of the rows after the latest checkpoint were checked: run again, or with --full.');
        // An intact chain whose tail no signed checkpoint covers could still be rewritten: say so.
        if (v.checkpoint_status === 'missing') out('Warning: no audit checkpoint exists yet.');
        if (v.checkpoint_status === 'stale') out(`Warning: the latest checkpoint is stale (${v.unprotected_rows ?? '?'} rows after it).`);
      }
      else out(`Audit chain BROKEN at seq ${v.first_bad_seq ?? '?'}: ${v.reason ?? 'no reason given'} (${v.rows} entries verified before it).`);
    },
  },
};
