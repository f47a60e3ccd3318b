/**
 * `sluice`: the operator CLI. It is only an HTTP client of the admin API (`/v1/admin/…`), of
 * `/v1/chat/completions` and of the Files and Batches API; it never opens the database.
 *
 * Shape: `parseCommand(argv, env)` (parse.ts) turns arguments into a {@link Command} without side
 * effects; `runCommand(command, deps)` runs its handler against the API and prints through
 * injected `fetch`/`out`/`err`; `cli` chains the two and maps usage errors to exit code 2.
 * Each command group lives in one file with its specs, handlers and printers (tenants.ts,
 * keys.ts, …); `scripts/sluice.ts` is the entry point, the only place that reads `process.env`.
 *
 * Exit codes: 0 success; 1 API error, unreachable server, or a broken audit chain; 2 usage error.
 *
 * Adding a command: a variant of the group's action type, a {@link CommandSpec} in its command
 * list, and a handler in its handler table; the table's type makes a missing handler a compile
 * error. A new group is added to `Action`, `COMMANDS` and `HANDLERS` below.
 */
import type { CommandSpec } from './args.js';
import { auditCommands, auditHandlers, type AuditAction } from './audit.js';
import { batchCommands, batchHandlers, type BatchAction } from './batch.js';
import { billingCommands, billingHandlers, type BillingAction } from './billing.js';
import { chatCommands, chatHandlers, type ChatAction } from './chat.js';
import { exportHandlers, type ExportAction } from './export.js';
import { experimentCommands, experimentHandlers, type ExperimentAction } from './experiments.js';
import { runCall, type CliDeps, type Handler, type Handlers } from './http.js';
import { invoiceCommands, invoiceHandlers, type InvoiceAction } from './invoices.js';
import { keyCommands, keyHandlers, type KeyAction } from './keys.js';
import { modelCommands, modelHandlers, type ModelAction } from './models.js';
import { parseWith, type CommandOf, type ParseResultOf } from './parse.js';
import { tenantCommands, tenantHandlers, type TenantAction } from './tenants.js';
import { usageCommands, usageHandlers, type UsageAction } from './usage.js';

export { formatMicros } from './format.js';
export { DEFAULT_URL, type CliDeps, type Connection } from './http.js';

/** One API operation, fully parsed and validated. */
export type Action = TenantAction | KeyAction | ModelAction | UsageAction | ExportAction | AuditAction | ChatAction | BatchAction | BillingAction | InvoiceAction | ExperimentAction;

/** What `runCommand` executes: print help, or call the API. */
export type Command = CommandOf<Action>;

/** The outcome of parsing: a command, or a usage error with the help to show (exit code 2). */
export type ParseResult = ParseResultOf<Action>;

/** Every command, in the order help lists them. */
const COMMANDS: readonly CommandSpec<Action>[] = [
  ...tenantCommands, ...keyCommands, ...modelCommands, ...billingCommands, ...invoiceCommands,
  ...usageCommands, ...auditCommands, ...chatCommands, ...batchCommands, ...experimentCommands,
];

const HANDLERS: Handlers<Action> = {
  ...tenantHandlers, ...keyHandlers, ...modelHandlers, ...usageHandlers, ...exportHandlers,
  ...auditHandlers, ...chatHandlers, ...batchHandlers, ...billingHandlers, ...invoiceHandlers, ...experimentHandlers,
};

/**
 * Parses CLI arguments (without `node` and the script) into a command. Pure: the environment is
 * passed in (`SLUICE_URL`, `SLUICE_API_KEY`), flags win over it.
 */
export function parseCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): ParseResult {
  return parseWith(COMMANDS, argv, env);
}

/** Executes a parsed command and prints its result; returns the process exit code. */
export async function runCommand(cmd: Command, deps: CliDeps): Promise<number> {
  if (cmd.kind === 'help') {
    deps.out(cmd.text);
    return 0;
  }
  const handler = HANDLERS[cmd.action.kind] as Handler<Action>;
  const ctx = { conn: cmd.conn, json: cmd.json, deps };
  return 'run' in handler ? handler.run(cmd.action, ctx) : runCall(handler, cmd.action, ctx);
}

/** Parses and runs; a usage error prints the message and help to stderr and returns 2. */
export async function cli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, deps: CliDeps): Promise<number> {
  const parsed = parseCommand(argv, env);
  if (!parsed.ok) {
    deps.err(`sluice: ${parsed.error}`);
    deps.err('');
    deps.err(parsed.help);
    return 2;
  }
  return runCommand(parsed.command, deps);
}
