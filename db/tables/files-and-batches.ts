/** Uploaded files (their lines stored one row each) and the batches that run them. */
import type { ColumnType, Generated, Selectable } from 'kysely';
import type { CreatedAt, NullableTimestamp, Timestamp } from './columns.js';

export type FilePurpose = 'batch' | 'batch_output';
export type BatchStatus = 'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled';

export interface FilesTable {
  id: string;
  tenant_id: string;
  purpose: FilePurpose;
  filename: string;
  bytes: number;
  line_count: number;
  trailing_newline: boolean;
  created_at: CreatedAt;
  /** When the content (`file_lines`) was purged by retention or erasure; the row stays. */
  content_purged_at: NullableTimestamp;
}

export interface FileLinesTable {
  file_id: string;
  /** 1-based line number in the file. */
  line_no: number;
  content: string;
}

/** One validation error of a batch input line, as OpenAI reports it in `errors.data`. */
export interface BatchLineError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

export interface BatchesTable {
  id: string;
  tenant_id: string;
  key_id: string;
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  errors: ColumnType<BatchLineError[] | null, string | null, string | null>;
  metadata: ColumnType<Record<string, string> | null, string | null, string | null>;
  model: string | null;
  estimated_cost_micros: number | null;
  total: Generated<number>;
  completed: Generated<number>;
  failed: Generated<number>;
  created_at: CreatedAt;
  expires_at: Timestamp;
  in_progress_at: Timestamp | null;
  finalizing_at: Timestamp | null;
  completed_at: Timestamp | null;
  failed_at: Timestamp | null;
  expired_at: Timestamp | null;
  cancelling_at: Timestamp | null;
  cancelled_at: Timestamp | null;
}

/** The file and batch tables of `Database`. */
export interface FileAndBatchTables {
  files: FilesTable;
  file_lines: FileLinesTable;
  batches: BatchesTable;
}

export type FileRow = Selectable<FilesTable>;
export type BatchRow = Selectable<BatchesTable>;
