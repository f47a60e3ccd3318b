/** Inputs and progress of the `batch` workflow. Pure types. */
import type { ChatRequestInput } from './chat.js';
import type { EmbeddingsRequestInput } from './embeddings.js';

/** Input of the `batch` workflow (a later run of it carries its progress in `state`). */
export interface BatchWorkflowInput {
  batchId: string;
  tenantId: string;
  /** Lines in flight at once. */
  concurrency: number;
  /** Lines started per run before continuing as new (history stays bounded). */
  linesPerRun: number;
  /**
   * Most lines whose admission, inference or completion share one activity. Absent in the input
   * of batches started before it existed: 64, what they ran with (their histories replay the same).
   */
  chunkLines?: number;
  /** Unix ms after which unfinished lines expire (created + completion window). */
  expiresAtMs: number;
  state: BatchProgress | null;
}

export interface BatchProgress {
  /** Last line number started; the next run continues after it. */
  afterLine: number;
  total: number;
  completed: number;
  failed: number;
  cancelRequested: boolean;
}

/** One line ready to run, as the batch activities hand it to the workflow. */
export interface BatchLine {
  lineNo: number;
  /** A chat line, or (a `/v1/embeddings` batch) an embeddings line: it has `inputs`. */
  input: ChatRequestInput | EmbeddingsRequestInput;
}

// ---------------------------------------------------------------------------------------------
// Billing (issue 5)
// ---------------------------------------------------------------------------------------------
