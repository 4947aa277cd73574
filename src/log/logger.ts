// Structured logs: JSON lines, or readable lines when stderr is a terminal. Secrets never go in.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

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
  write?: (line: string) => void;
}

export function isLogLevel(s: string): s is LogLevel {
  return s in LEVELS;
}

/** Creates a logger writing to stderr (or `write`). */
export function createLogger(opts: LoggerOptions = {}, base: LogFields = {}): Logger {
  const min = LEVELS[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const pretty = opts.format === 'pretty' || ((opts.format ?? 'auto') === 'auto' && process.stderr.isTTY === true);
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LEVELS[level] < min) return;
    const all = { ...base, ...fields };
    if (pretty) {
      const extra = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${extra ? ` ${extra}` : ''}\n`);
    } else {
      write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...all })}\n`);
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    enabled: (level) => LEVELS[level] >= min,
    child: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}

/** A logger that writes nothing (library use, tests). */
export const silentLogger: Logger = createLogger({ level: 'error', write: () => undefined });
