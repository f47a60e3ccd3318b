/** Column types the table files share (not re-exported: rows are read through the Selectable aliases). */
import type { ColumnType } from 'kysely';

/** A `timestamptz` column: read as a Date, written as a Date or an ISO string. */
export type Timestamp = ColumnType<Date, Date | string, Date | string>;

/** `created_at default now()`: may be given on insert, never updated. */
export type CreatedAt = ColumnType<Date, Date | string | undefined, never>;

/** `updated_at default now()`: may be given on insert, set on update. */
export type UpdatedAt = ColumnType<Date, Date | string | undefined, Date | string>;

/** A nullable `timestamptz` added by a later migration: omitted on insert means null. */
export type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
