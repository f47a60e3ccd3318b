/**
 * What every process sets up for its Temporal connection: the SDK's logger (its bundler report
 * and worker state lines at debug level, so start-up output is Sluice's own) and TLS options.
 */
import fs from 'node:fs/promises';
import { Runtime, type TLSConfig } from '@temporalio/worker';
import type { LogLevel as SdkLogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';
import type { Logger, LogFields } from './logger.js';
import { ConfigError, type TemporalTlsConfig } from './config.js';

function fieldsOf(meta: LogMetadata | undefined): LogFields {
  const fields: LogFields = {};
  for (const [k, v] of Object.entries(meta ?? {})) {
    fields[k] = v === null || ['string', 'number', 'boolean'].includes(typeof v) ? (v as string | number | boolean | null) : JSON.stringify(v);
  }
  return fields;
}

/** SDK warnings about what Sluice does on purpose: inference workers register activities only. */
const EXPECTED_WARNINGS = new Set(['No workflows registered, not polling for workflow tasks']);

/**
 * The SDK's logger over Sluice's: TRACE, DEBUG and INFO (the workflow bundler's webpack report,
 * "Worker state changed", …) become debug lines; WARN and ERROR stay what they are.
 */
export function sdkLogger(log: Logger): SdkLogger {
  const at = (level: SdkLogLevel, message: string, meta?: LogMetadata) => {
    const fields = { sdk: true, ...fieldsOf(meta) };
    if (level === 'ERROR') log.error(message, fields);
    else if (level === 'WARN' && !EXPECTED_WARNINGS.has(message)) log.warn(message, fields);
    else log.debug(message, fields);
  };
  return {
    log: at,
    trace: (m, meta) => at('TRACE', m, meta),
    debug: (m, meta) => at('DEBUG', m, meta),
    info: (m, meta) => at('INFO', m, meta),
    warn: (m, meta) => at('WARN', m, meta),
    error: (m, meta) => at('ERROR', m, meta),
  };
}

/** Installs the SDK runtime with {@link sdkLogger}; call once, first thing in an entry point. */
export function installTemporalRuntime(log: Logger): void {
  Runtime.install({ logger: sdkLogger(log) });
}

/** The connection's TLS options from the configured files; undefined = plaintext. */
export async function temporalTlsOptions(tls: TemporalTlsConfig | null): Promise<TLSConfig | undefined> {
  if (tls === null) return undefined;
  const read = async (file: string, variable: string) => {
    try {
      return await fs.readFile(file);
    } catch (err) {
      throw new ConfigError(`${variable}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  };
  const options: TLSConfig = {};
  if (tls.serverName !== null) options.serverNameOverride = tls.serverName;
  if (tls.caFile !== null) options.serverRootCACertificate = await read(tls.caFile, 'TEMPORAL_TLS_CA');
  if (tls.certFile !== null && tls.keyFile !== null) {
    options.clientCertPair = { crt: await read(tls.certFile, 'TEMPORAL_TLS_CERT'), key: await read(tls.keyFile, 'TEMPORAL_TLS_KEY') };
  }
  return options;
}
