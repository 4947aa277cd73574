// Structured logs through pino: JSON lines, or readable lines when stderr is a terminal. Writes are
// synchronous (no transport thread), so a line is out before the process exits. Secrets never go in:
// callers do not pass them, and fields that would hold one are redacted all the same.
import { recentLog } from './recent.js';
import { destination, pino, stdTimeFunctions, type DestinationStream, type Logger as PinoLogger } from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS: ReadonlySet<string> = new Set<LogLevel>(['debug', 'info', 'warn', 'error']);

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** true when messages at `level` are written (to skip building costly fields) */
  enabled(level: LogLevel): boolean;
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** 'json' always, 'pretty' always, or 'auto' (pretty on a TTY) */
  format?: 'json' | 'pretty' | 'auto';
  /** receives each line, newline included (default: synchronous write to stderr) */
  write?: (line: string) => void;
}

export function isLogLevel(s: string): s is LogLevel {
  return LEVELS.has(s);
}

/** Field names whose values are replaced, should a caller ever pass a secret by mistake. */
const REDACTED = ['password', 'token', 'authorization'];

let stderrStream: DestinationStream | undefined;

/** One synchronous writer on fd 2 per thread (fs.writeSync: no buffering, no worker thread). */
function stderr(): DestinationStream {
  stderrStream ??= destination({ dest: 2, sync: true });
  return stderrStream;
}

/** "12:34:56.789 INFO  listening socks=127.0.0.1:1080" from one of pino's JSON lines. */
export function prettyLine(json: string): string {
  const { time, level, msg, ...fields } = JSON.parse(json) as LogFields;
  const extra = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const clock = typeof time === 'string' ? time.slice(11, 23) : '';
  return `${clock} ${String(level).toUpperCase().padEnd(5)} ${String(msg)}${extra ? ` ${extra}` : ''}\n`;
}

function wrap(p: PinoLogger): Logger {
  return {
    debug: (msg, fields) => (fields === undefined ? p.debug(msg) : p.debug(fields, msg)),
    info: (msg, fields) => (fields === undefined ? p.info(msg) : p.info(fields, msg)),
    warn: (msg, fields) => (fields === undefined ? p.warn(msg) : p.warn(fields, msg)),
    error: (msg, fields) => (fields === undefined ? p.error(msg) : p.error(fields, msg)),
    enabled: (level) => p.isLevelEnabled(level),
    child: (fields) => wrap(p.child(fields)),
  };
}

/** Creates a logger writing to stderr (or `write`); `base` fields go on every line. */
export function createLogger(opts: LoggerOptions = {}, base: LogFields = {}): Logger {
  const pretty = opts.format === 'pretty' || ((opts.format ?? 'auto') === 'auto' && process.stderr.isTTY === true);
  const sink: DestinationStream = opts.write ? { write: opts.write } : stderr();
  const out: DestinationStream = {
    write: (line) => {
      recentLog.push(line);
      sink.write(pretty ? prettyLine(line) : line);
    },
  };
  const p = pino(
    {
      level: opts.level ?? 'info',
      base,
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED, censor: '[redacted]' },
    },
    out,
  );
  return wrap(p);
}

/** A logger that writes nothing (library use, tests). */
export const silentLogger: Logger = wrap(pino({ level: 'silent' }, { write: () => undefined }));
