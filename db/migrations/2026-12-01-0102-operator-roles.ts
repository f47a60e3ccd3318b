/**
 * Operator roles and protected checkpoints: the `operator_finance` role, operator roles
 * (`super_admin`, `operator_finance`) only on keys without a tenant and tenant roles only on keys
 * of a tenant; and `audit_checkpoints` append-only like `audit_log` (updates, deletes and
 * truncation raise). Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table api_keys drop constraint if exists api_keys_role_check`.execute(db);
  await sql`alter table api_keys drop constraint if exists api_keys_super_admin_has_no_tenant`.execute(db);
  await sql`alter table api_keys add constraint api_keys_role_check
    check (role in ('super_admin', 'operator_finance', 'tenant_admin', 'developer', 'analyst', 'finance', 'user'))`.execute(db);
  await sql`alter table api_keys add constraint api_keys_operator_roles_have_no_tenant
    check ((role in ('super_admin', 'operator_finance')) = (tenant_id is null))`.execute(db);

  await sql`
    create function audit_checkpoints_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'audit_checkpoints is append-only';
    end;
    $$`.execute(db);
  await sql`
    create trigger audit_checkpoints_append_only before update or delete on audit_checkpoints
    for each row execute function audit_checkpoints_append_only()`.execute(db);
  await sql`
    create trigger audit_checkpoints_no_truncate before truncate on audit_checkpoints
    for each statement execute function audit_checkpoints_append_only()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists audit_checkpoints_no_truncate on audit_checkpoints`.execute(db);
  await sql`drop trigger if exists audit_checkpoints_append_only on audit_checkpoints`.execute(db);
  await sql`drop function if exists audit_checkpoints_append_only()`.execute(db);
  await sql`alter table api_keys drop constraint if exists api_keys_operator_roles_have_no_tenant`.execute(db);
  await sql`alter table api_keys drop constraint if exists api_keys_role_check`.execute(db);
  await sql`alter table api_keys add constraint api_keys_role_check
    check (role in ('super_admin', 'tenant_admin', 'developer', 'analyst', 'finance', 'user'))`.execute(db);
  await sql`alter table api_keys add constraint api_keys_super_admin_has_no_tenant
    check ((role = 'super_admin') = (tenant_id is null))`.execute(db);
}
