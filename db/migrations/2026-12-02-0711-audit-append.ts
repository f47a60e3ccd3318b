/**
 * One audit append in one round trip (issue 18 target 1): `sluice_audit_append` locks the chain's
 * head, returns the row already holding the idempotency key if there is one (a retry appends
 * nothing), else inserts the next row and moves the head to it, all in the caller's statement.
 * The client sends the row's canonical content split around its `seq` (`before` || seq || `after`,
 * seq written as PostgreSQL writes an integer, which is how JavaScript writes it); the function
 * hashes `prev_hash` || '\n' || content with SHA-256, as `auditHash` does. It took four
 * statements (begin, head `for update`, insert + move, commit).
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create or replace function sluice_audit_append(
      p_created_at timestamptz, p_actor text, p_tenant_id text, p_action text, p_target text, p_data jsonb,
      p_idempotency_key text, p_before text, p_after text
    ) returns setof audit_log language plpgsql as $fn$
    declare
      head audit_head;
      r audit_log;
    begin
      select * into strict head from audit_head where id = 1 for update;
      if p_idempotency_key is not null then
        select * into r from audit_log where idempotency_key = p_idempotency_key;
        if found then
          return next r;
          return;
        end if;
      end if;
      insert into audit_log (seq, created_at, actor, tenant_id, action, target, data, idempotency_key, prev_hash, hash)
      values (head.seq + 1, p_created_at, p_actor, p_tenant_id, p_action, p_target, p_data, p_idempotency_key, head.hash,
        encode(sha256(convert_to(head.hash || E'\n' || p_before || (head.seq + 1)::text || p_after, 'UTF8')), 'hex'))
      returning * into r;
      update audit_head set seq = r.seq, hash = r.hash where id = 1;
      return next r;
    end
    $fn$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists sluice_audit_append(timestamptz, text, text, text, text, jsonb, text, text, text)`.execute(db);
}
