/** The control worker: every workflow, and the database activities, on `sluice-control`. */
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, type NativeConnection, Worker, type WorkerInterceptors, type WorkerOptions, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { PayloadCodec } from '@temporalio/common';
import { createControlActivities, type ControlDeps } from '../activities/index.js';
import { CONTROL_TASK_QUEUE } from '../contracts/ids.js';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/**
 * Modules the workflow sandbox evaluates once per workflow thread instead of once per workflow:
 * all of `workflows/` and the pure modules it imports (`contracts/`, `domain/`). With the SDK's
 * reusable V8 context every module not preloaded is evaluated again for each new workflow (its
 * own module cache); these hold no per-workflow state (no module-level mutable state: STYLE.md),
 * so sharing them is what the SDK already does with `@temporalio/workflow` itself (BENCHMARKS.md,
 * "Issue 18, target 1: the workflow threads' CPU").
 */
const PRELOADED_WORKFLOW_MODULES: readonly string[] = [WORKFLOWS_PATH];

/**
 * The control worker's workflow bundle, built ahead (tests, benchmarks, replays): the same
 * modules preloaded as a worker bundling `workflows/` itself. `workflowInterceptorModules`: traces'.
 */
export function bundleControlWorkflows(options: { workflowInterceptorModules?: readonly string[] } = {}): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    preloadModules: [...PRELOADED_WORKFLOW_MODULES],
    ...(options.workflowInterceptorModules ? { workflowInterceptorModules: [...options.workflowInterceptorModules] } : {}),
    logger: undefined,
  });
}

export interface ControlWorkerOptions {
  namespace: string;
  /** A prebuilt workflow bundle (tests and benchmarks bundle once: {@link bundleControlWorkflows}); null bundles `workflows/` now. */
  workflowBundle?: WorkerOptions['workflowBundle'] | null;
  /** Concurrent workflow tasks. @default 100 */
  maxConcurrentWorkflowTasks?: number;
  /** Concurrent activities (database steps). @default 100 */
  maxConcurrentActivities?: number;
  /**
   * Threads that run workflow code. Two by default: a workflow runs on one thread, so a sync
   * request's workflow task then waits behind a batch's large activations only when both landed
   * on the same thread (BENCHMARKS.md: sync p50 during a batch ~410 → ~315 ms; batch and sync
   * alone unchanged). @default 2
   */
  workflowThreads?: number;
  /** Codecs over every payload (the encryption codec of `SLUICE_PAYLOAD_KEY`). @default [] */
  payloadCodecs?: PayloadCodec[];
  /**
   * Interceptors (traces: `Tracing.workerInterceptors`); their `workflowModules` must be in a
   * prebuilt `workflowBundle` (`bundleWorkflowCode({ workflowInterceptorModules })`). @default none
   */
  interceptors?: WorkerInterceptors;
  /** Sinks workflow code calls (traces: `Tracing.sinks`, the workflow spans' exporter). @default none */
  sinks?: WorkerOptions['sinks'];
}

export async function createControlWorker(options: ControlWorkerOptions, connection: NativeConnection, deps: ControlDeps): Promise<Worker> {
  return Worker.create({
    connection,
    namespace: options.namespace,
    taskQueue: CONTROL_TASK_QUEUE,
    ...(options.workflowBundle
      ? { workflowBundle: options.workflowBundle }
      : { workflowsPath: WORKFLOWS_PATH, bundlerOptions: { preloadModules: [...PRELOADED_WORKFLOW_MODULES] } }),
    activities: createControlActivities(deps),
    dataConverter: { payloadCodecs: options.payloadCodecs ?? [] },
    maxConcurrentWorkflowTaskExecutions: options.maxConcurrentWorkflowTasks ?? 100,
    maxConcurrentActivityTaskExecutions: options.maxConcurrentActivities ?? 100,
    maxConcurrentLocalActivityExecutions: options.maxConcurrentActivities ?? 100,
    maxCachedWorkflows: 1000,
    workflowThreadPoolSize: options.workflowThreads ?? 2,
    shutdownGraceTime: '10s',
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
    ...(options.sinks ? { sinks: options.sinks } : {}),
  });
}
