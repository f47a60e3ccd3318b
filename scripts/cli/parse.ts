/** The command line → a command: path lookup, options, positionals, connection, help. Pure. */
import { parseArgs } from 'node:util';
import { str, UsageError, type CommandSpec, type OptionSpec, type Values } from './args.js';
import { formatTable } from './format.js';
import { DEFAULT_URL, normalizeUrl, type Connection } from './http.js';

/** What `runCommand` executes: print help, or call the API. */
export type CommandOf<A> =
  | { kind: 'help'; text: string }
  | { kind: 'api'; conn: Connection; json: boolean; action: A };

/** The outcome of parsing: a command, or a usage error with the help to show (exit code 2). */
export type ParseResultOf<A> = { ok: true; command: CommandOf<A> } | { ok: false; error: string; help: string };

const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  url: { type: 'string', arg: 'URL', help: `API base URL (env SLUICE_URL, default ${DEFAULT_URL})` },
  key: { type: 'string', arg: 'KEY', help: 'API key (env SLUICE_API_KEY; prefer the env var, flags show up in ps)' },
  json: { type: 'boolean', help: 'print the raw JSON response instead of a table or summary' },
  help: { type: 'boolean', short: 'h', help: 'show help' },
};

function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  const rows = Object.entries(options).map(([name, o]) => [
    `  ${o.short ? `-${o.short}, ` : ''}--${name}${o.arg ? ` ${o.arg}` : ''}`,
    o.help,
  ]);
  return formatTable(rows, 3);
}

function commandLine(spec: CommandSpec<unknown>): string {
  return ['sluice', ...spec.path, spec.synopsis].filter((s) => s !== '').join(' ');
}

/** Help for everything, one group (`tenants`), or one command. */
function helpText(commands: readonly CommandSpec<unknown>[], topic: readonly string[] = []): string {
  const exact = commands.find((c) => c.path.join(' ') === topic.join(' '));
  if (exact) {
    return [
      `Usage: ${commandLine(exact)}`,
      '',
      `${exact.summary[0]?.toUpperCase() ?? ''}${exact.summary.slice(1)}.`,
      ...(Object.keys(exact.options).length > 0 ? ['', 'Options:', ...optionLines(exact.options)] : []),
      '',
      'Global options:',
      ...optionLines(GLOBAL_OPTIONS),
    ].join('\n');
  }
  const group = topic.length > 0 ? commands.filter((c) => c.path[0] === topic[0]) : [];
  const shown = group.length > 0 ? group : commands;
  return [
    group.length > 0 ? `Usage: sluice ${topic[0]} <command> [options]` : 'Usage: sluice <command> [options]',
    '',
    'Sluice operator CLI: a client of the Sluice HTTP API.',
    '',
    'Commands:',
    ...formatTable(shown.map((c) => [`  sluice ${c.path.join(' ')}`, c.summary]), 3),
    '',
    'Global options:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    'Environment: SLUICE_URL, SLUICE_API_KEY. Run `sluice <command> --help` for its options.',
  ].join('\n');
}

/** The leading words of argv (the command path), skipping global options and their values. */
function leadingWords(argv: readonly string[]): string[] {
  const words: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const token = argv[i] as string;
    if (token === '--') break;
    if (token === '--url' || token === '--key') i += 1;
    else if (!token.startsWith('-')) words.push(token);
  }
  return words;
}

/** Parses `argv` against `commands`; the environment gives the connection, flags win over it. */
export function parseWith<A>(commands: readonly CommandSpec<A>[], argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParseResultOf<A> {
  const words = leadingWords(argv);
  const wantsHelp = argv.includes('--help') || argv.includes('-h');
  if (words[0] === 'help') return { ok: true, command: { kind: 'help', text: helpText(commands, words.slice(1)) } };
  if (words.length === 0) {
    return wantsHelp ? { ok: true, command: { kind: 'help', text: helpText(commands) } } : { ok: false, error: 'missing command', help: helpText(commands) };
  }
  const spec = commands.find((c) => c.path.every((w, i) => words[i] === w));
  if (!spec) {
    const isGroup = commands.some((c) => c.path.length > 1 && c.path[0] === words[0]);
    if (!isGroup) return { ok: false, error: `unknown command '${words[0]}'`, help: helpText(commands) };
    if (words.length === 1 && wantsHelp) return { ok: true, command: { kind: 'help', text: helpText(commands, words) } };
    const error = words.length === 1 ? `missing ${words[0]} command` : `unknown ${words[0]} command '${words[1]}'`;
    return { ok: false, error, help: helpText(commands, words.slice(0, 1)) };
  }
  const help = helpText(commands, spec.path);
  try {
    const options = Object.fromEntries(
      Object.entries({ ...GLOBAL_OPTIONS, ...spec.options }).map(([name, o]) => [name, o.short ? { type: o.type, short: o.short } : { type: o.type }]),
    );
    let parsed: { values: Values; positionals: string[] };
    try {
      parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true }) as { values: Values; positionals: string[] };
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
    const { values } = parsed;
    if (values.help === true) return { ok: true, command: { kind: 'help', text: help } };
    const args = parsed.positionals.slice(spec.path.length);
    if (args.length < spec.args.length) throw new UsageError(`missing ${spec.args.slice(args.length).join(' ')}`);
    if (!spec.variadic && args.length > spec.args.length) throw new UsageError(`unexpected argument '${args[spec.args.length]}'`);
    const action = spec.build(values, args);
    const key = str(values, 'key') ?? env.SLUICE_API_KEY;
    if (key === undefined || key.trim() === '') throw new UsageError('no API key: set SLUICE_API_KEY or pass --key');
    const url = normalizeUrl(str(values, 'url') ?? env.SLUICE_URL ?? DEFAULT_URL);
    return { ok: true, command: { kind: 'api', conn: { url, key: key.trim() }, json: values.json === true, action } };
  } catch (err) {
    if (err instanceof UsageError) return { ok: false, error: err.message, help };
    throw err;
  }
}
