/**
 * The command line → a command, on commander: the specs of the group files become a commander
 * program (one per parse, so parsing stays pure), commander parses options and positionals and
 * writes help, and each spec's `build` validates the values. Nothing is printed here: help and
 * errors come back as text, and nothing exits.
 */
import { Command as Program, type CommanderError, Option } from 'commander';
import { UsageError, type CommandSpec, type Values } from './args.js';
import { DEFAULT_URL, normalizeUrl, type Connection } from './http.js';

/** What `runCommand` executes: print help, or call the API. */
export type CommandOf<A> =
  | { kind: 'help'; text: string }
  | { kind: 'api'; conn: Connection; json: boolean; action: A };

/** The outcome of parsing: a command, or a usage error with the help to show (exit code 2). */
export type ParseResultOf<A> = { ok: true; command: CommandOf<A> } | { ok: false; error: string; help: string };

/** What the group commands (`sluice tenants …`) are about; their subcommands are listed after it. */
const GROUPS: Readonly<Record<string, string>> = {
  tenants: 'Tenants and their limits',
  keys: "A tenant's API keys",
  models: 'Models and their deployments',
  billing: 'Monthly billing runs and day closes',
  invoices: 'Invoices and their corrections',
  audit: 'The hash-chained audit log',
  batch: 'Batches of chat completions (the OpenAI Files and Batches API)',
};

const GLOBAL_OPTIONS = [
  ['--url <URL>', `API base URL (env SLUICE_URL, default ${DEFAULT_URL})`],
  ['--key <KEY>', 'API key (env SLUICE_API_KEY; prefer the env var, flags show up in ps)'],
  ['--json', 'print the raw JSON response instead of a table or summary'],
] as const;

const HELP_WIDTH = 100;

/** A usage error, or help asked for, in `command`: carries the command whose help goes with it. */
class Stop extends Error {
  constructor(readonly command: Program, readonly error: string | null) {
    super(error ?? 'help');
  }
}

/** The help text commander writes for `command`. */
function helpOf(command: Program, sink: { text: string }): string {
  sink.text = '';
  command.outputHelp();
  return sink.text.trimEnd();
}

/** Option values by their spec name (`max-concurrent`, `no-wait`); a negated flag is true when given. */
function valuesOf(command: Program): Values {
  const opts = command.opts<Record<string, string | boolean | undefined>>();
  const values: Record<string, string | boolean | undefined> = {};
  for (const o of command.options) {
    const name = (o.long ?? '').replace(/^--/, '');
    const v = opts[o.attributeName()];
    values[name] = o.negate ? v === false : v;
  }
  return values;
}

/** The global options: shown on the program; on every group and command too (hidden), so they go anywhere. */
function addGlobals(command: Program, hidden: boolean): void {
  for (const [flags, help] of GLOBAL_OPTIONS) command.addOption(hidden ? new Option(flags, help).hideHelp() : new Option(flags, help));
}

/** A commander program for `commands`; a parsed command is handed to `done`. */
function programOf<A>(commands: readonly CommandSpec<A>[], sink: { text: string }, done: (spec: CommandSpec<A>, command: Program) => void): Program {
  const program = new Program('sluice')
    .description('Sluice operator CLI: a client of the Sluice HTTP API.')
    .usage('<command> [options]')
    .configureOutput({
      writeOut: (s) => (sink.text += s),
      writeErr: (s) => (sink.text += s),
      outputError: () => undefined,
      getOutHelpWidth: () => HELP_WIDTH,
      getErrHelpWidth: () => HELP_WIDTH,
      getOutHasColors: () => false,
      getErrHasColors: () => false,
    })
    .configureHelp({
      showGlobalOptions: true,
      // `get TENANT_ID`, not `get [options] <TENANT_ID>`: every command takes the (hidden) global options.
      subcommandTerm: (c) => [c.name(), ...c.registeredArguments.map((a) => (a.required ? `${a.name()}${a.variadic ? '...' : ''}` : `[${a.name()}]`))].join(' '),
    })
    .addHelpText('after', '\nEnvironment: SLUICE_URL, SLUICE_API_KEY. Run `sluice <command> --help` for its options.');
  addGlobals(program, false);
  const stopIn = (command: Program) =>
    command.exitOverride((e: CommanderError) => {
      // `--help`, or a group's `help <command>`; with exit code 1, a group called without a command.
      if (e.code === 'commander.helpDisplayed' || (e.code === 'commander.help' && e.exitCode === 0)) throw new Stop(command, null);
      if (e.code === 'commander.help') throw new Stop(command, command === program ? 'missing command' : `missing ${command.name()} command`);
      throw new Stop(command, e.message.replace(/^error: /, ''));
    });
  stopIn(program);

  const nodes = new Map<string, Program>();
  const nodeAt = (path: readonly string[]): Program => {
    const key = path.join(' ');
    const existing = nodes.get(key);
    if (existing) return existing;
    const parent = path.length === 1 ? program : nodeAt(path.slice(0, -1));
    const node = parent.command(path.at(-1) as string);
    stopIn(node);
    addGlobals(node, true);
    nodes.set(key, node);
    return node;
  };
  for (const spec of commands) {
    const command = nodeAt(spec.path);
    command.usage(spec.synopsis || '[options]').description(`${spec.summary[0]?.toUpperCase() ?? ''}${spec.summary.slice(1)}.`);
    for (const [name, o] of Object.entries(spec.options)) {
      command.addOption(new Option(`${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ` <${o.arg ?? 'VALUE'}>` : ''}`, o.help));
    }
    spec.args.forEach((name, i) => command.argument(spec.variadic && i === spec.args.length - 1 ? `<${name}...>` : `<${name}>`));
    command.action(() => done(spec, command));
  }
  for (const [name, about] of Object.entries(GROUPS)) {
    const group = nodes.get(name);
    if (group) group.usage('<command> [options]').description(`${about}: ${group.commands.map((c) => c.name()).join(', ')}.`);
  }
  return program;
}

/** Parses `argv` against `commands`; the environment gives the connection, flags win over it. */
export function parseWith<A>(commands: readonly CommandSpec<A>[], argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParseResultOf<A> {
  // `sluice help tenants create` is `sluice tenants create --help` (commander's own `help` takes one word).
  const args = argv[0] === 'help' ? [...argv.slice(1).filter((a) => !a.startsWith('-')), '--help'] : [...argv];
  const sink = { text: '' };
  let parsed: CommandOf<A> | undefined;
  const program = programOf(commands, sink, (spec, command) => {
    try {
      const values = valuesOf(command);
      const action = spec.build(values, (command.processedArgs as Array<string | string[]>).flat());
      const globals = command.optsWithGlobals<{ url?: string; key?: string; json?: boolean }>();
      const key = globals.key ?? env.SLUICE_API_KEY;
      if (key === undefined || key.trim() === '') throw new UsageError('no API key: set SLUICE_API_KEY or pass --key');
      const url = normalizeUrl(globals.url ?? env.SLUICE_URL ?? DEFAULT_URL);
      parsed = { kind: 'api', conn: { url, key: key.trim() }, json: globals.json === true, action };
    } catch (err) {
      if (err instanceof UsageError) throw new Stop(command, err.message);
      throw err;
    }
  });
  try {
    program.parse(args, { from: 'user' });
  } catch (err) {
    if (!(err instanceof Stop)) throw err;
    if (err.error === null) return { ok: true, command: { kind: 'help', text: sink.text.trimEnd() } };
    return { ok: false, error: err.error, help: helpOf(err.command, sink) };
  }
  if (parsed === undefined) throw new Error(`sluice: no command ran for '${argv.join(' ')}'`);
  return { ok: true, command: parsed };
}
