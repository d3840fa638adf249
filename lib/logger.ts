import pino from 'pino';
import type { Redactor } from '../core/redaction';
import { environmentRedactor } from './secrets';

export type Logger = pino.Logger;

export interface LoggerOptions {
  /** What each line is redacted with; default: the environment's secrets (`lib/secrets.ts`). */
  redactor?: Redactor;
  /** Where lines go; default stdout. */
  destination?: pino.DestinationStream;
}

/**
 * A pino logger whose every line, once serialized (message, fields, an error's stack, a child's
 * bindings), has the process's secrets and credential shapes redacted before it is written: a
 * provider or server error logged as it came cannot carry a key into the logs.
 */
export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info', options: LoggerOptions = {}): Logger {
  const redactor = options.redactor ?? environmentRedactor();
  const settings: pino.LoggerOptions = { name, level, hooks: { streamWrite: (line) => redactor.credentials(line) } };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}
