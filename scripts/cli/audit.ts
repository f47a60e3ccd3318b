/** `sluice audit list|verify`. */
import { intOpt, type CommandSpec } from './args.js';
import { formatTime, printList } from './format.js';
import type { Handlers, ListJson } from './http.js';

export type AuditAction = { kind: 'audit.list'; limit: number | null; before: number | null } | { kind: 'audit.verify' };

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
    synopsis: '',
    summary: 'check the hash chain of the audit log; exit code 1 if it is broken',
    options: {},
    args: [],
    build: () => ({ kind: 'audit.verify' }),
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
    request: () => ({ method: 'GET', path: '/v1/admin/audit/verify' }),
    resultStatuses: [409],
    exitCode: (body) => ((body as AuditVerificationJson).ok ? 0 : 1),
    render(body, _a, { out }) {
      const v = body as AuditVerificationJson;
      if (v.ok) out(`Audit chain OK: ${v.rows} entries verified, head at seq ${v.head_seq ?? '?'} (hash ${(v.head_hash ?? '?').slice(0, 16)}…).`);
      else out(`Audit chain BROKEN at seq ${v.first_bad_seq ?? '?'}: ${v.reason ?? 'no reason given'} (${v.rows} entries verified before it).`);
    },
  },
};
