/**
 * One OS process of the cluster, as it would run on its own host: spawned with exactly the
 * environment it is given (nothing inherited but PATH and HOME), its output kept as a short tail,
 * "ready" when a line it writes says so, and killable and restartable by tests and by the
 * cluster's own Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface ProcessSpec {
  /** Unique name, e.g. `api-1`. */
  name: string;
  /** What it is, for the summary and the CPU figures: `api`, `worker-control`, `temporal`, … */
  role: string;
  command: string;
  args: readonly string[];
  /** The whole environment of the child (PATH and HOME are added when absent). */
  env: Readonly<Record<string, string>>;
  cwd?: string;
  /** Whether an output line shows the process is ready; omitted: ready once spawned. */
  ready?: (line: string) => boolean;
  /** Extra readiness check, polled after `ready` matched (or from the start when `ready` is omitted). */
  probe?: () => Promise<boolean>;
  /** @default 120000 */
  readyTimeoutMs?: number;
  /** Every output line, e.g. into a log file. */
  onLine?: (line: string) => void;
  /** Called when the process exits without `kill()` or `stop()` having been asked for (a crash). */
  onCrash?: (description: string) => void;
}

export interface ManagedProcess {
  readonly spec: ProcessSpec;
  /** PID of the running child, or null when it is not running. */
  pid(): number | null;
  running(): boolean;
  /** The last output lines (for failure messages). */
  tail(): string;
  /** Starts the child and waits until it is ready; rejects (with its output) when it exits first. */
  start(): Promise<void>;
  /** Sends `signal` and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves at the child's next exit (immediately when it is not running). */
  exited(): Promise<void>;
}

const TAIL_LINES = 40;

/** Creates (does not start) a managed process. */
export function managedProcess(spec: ProcessSpec): ManagedProcess {
  let child: ChildProcess | null = null;
  let exit: Promise<void> = Promise.resolve();
  const tail: string[] = [];
  /** Set by `kill()` and `stop()`: the next exit was asked for. */
  let expectingExit = false;
  const isAlive = (c: ChildProcess | null): c is ChildProcess => c !== null && c.exitCode === null && c.signalCode === null;
  // Last resort: a parent that ends without stopping its children takes them along.
  const onParentExit = () => {
    if (isAlive(child)) child.kill('SIGKILL');
  };

  const handle: ManagedProcess = {
    spec,
    pid: () => (isAlive(child) ? child.pid ?? null : null),
    running: () => isAlive(child),
    tail: () => tail.join('\n'),
    exited: () => exit,
    async start() {
      if (isAlive(child)) throw new Error(`${spec.name} is already running`);
      let readyLine = spec.ready === undefined;
      let failed: Error | null = null;
      expectingExit = false;
      const started = spawn(spec.command, [...spec.args], {
        cwd: spec.cwd,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...spec.env },
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group: a terminal's Ctrl-C reaches only the cluster, which then stops its
        // processes in order (children, Temporal, PostgreSQL) instead of all at once.
        detached: true,
      });
      child = started;
      process.on('exit', onParentExit);
      exit = new Promise<void>((resolve) => {
        started.once('exit', (code, signal) => {
          process.removeListener('exit', onParentExit);
          failed = new Error(`${spec.name} exited with ${code ?? signal}; its last output:\n${tail.join('\n')}`);
          if (!expectingExit) spec.onCrash?.(`${spec.name} exited with ${code ?? signal}`);
          resolve();
        });
        started.once('error', (err) => {
          failed = err;
          resolve();
        });
      });
      let partial = '';
      const onData = (chunk: Buffer) => {
        const text = partial + chunk.toString();
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (!line.trim()) continue;
          tail.push(line.slice(0, 2000));
          if (tail.length > TAIL_LINES) tail.shift();
          spec.onLine?.(line);
          if (!readyLine && spec.ready?.(line)) readyLine = true;
        }
      };
      started.stdout?.on('data', onData);
      started.stderr?.on('data', onData);
      const deadline = Date.now() + (spec.readyTimeoutMs ?? 120_000);
      for (;;) {
        if (failed !== null) throw failed;
        if (readyLine && (spec.probe === undefined || await spec.probe().catch(() => false))) {
          if (failed !== null) throw failed;
          return;
        }
        if (Date.now() > deadline) {
          expectingExit = true;
          started.kill('SIGKILL');
          await exit;
          throw new Error(`${spec.name} was not ready within ${spec.readyTimeoutMs ?? 120_000} ms; its last output:\n${tail.join('\n')}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async kill(signal = 'SIGKILL') {
      if (!isAlive(child)) return;
      expectingExit = true;
      child.kill(signal);
      await exit;
    },
    async stop(graceMs = 30_000) {
      if (!isAlive(child)) return;
      const c = child;
      expectingExit = true;
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
  return handle;
}
