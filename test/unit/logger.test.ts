import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger, isLogLevel, silentLogger, type LoggerOptions } from '../../src/log/logger.js';

function collect(opts: LoggerOptions = {}, base = {}): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, log: createLogger({ format: 'json', ...opts, write: (l) => lines.push(l) }, base) };
}

describe('logger', () => {
  it('writes one JSON line per message: level label, ISO time, msg, fields at top level', () => {
    const { lines, log } = collect();
    log.info('listening', { socks: '127.0.0.1:1080', workers: 2, kernel: { mptcp: true } });
    assert.equal(lines.length, 1);
    assert.ok(lines[0]!.endsWith('\n'));
    const o = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(o.level, 'info');
    assert.equal(o.msg, 'listening');
    assert.equal(typeof o.time, 'string');
    assert.equal(new Date(o.time as string).toISOString(), o.time);
    assert.equal(o.socks, '127.0.0.1:1080');
    assert.equal(o.workers, 2);
    assert.deepEqual(o.kernel, { mptcp: true });
    assert.deepEqual(Object.keys(o).sort(), ['kernel', 'level', 'msg', 'socks', 'time', 'workers']);
  });

  it('leaves a message with % signs as it is', () => {
    const { lines, log } = collect();
    log.warn('100% %s %d', { a: 1 });
    log.warn('50% %s');
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { msg: string }).msg),
      ['100% %s %d', '50% %s'],
    );
  });

  it('drops messages below the level and says so through enabled()', () => {
    const { lines, log } = collect({ level: 'warn' });
    log.debug('a');
    log.info('b');
    log.warn('c');
    log.error('d');
    assert.deepEqual(
      lines.map((l) => JSON.parse(l) as { level: string; msg: string }).map((l) => `${l.level}:${l.msg}`),
      ['warn:c', 'error:d'],
    );
    assert.equal(log.enabled('info'), false);
    assert.equal(log.enabled('warn'), true);
    assert.equal(silentLogger.enabled('error'), false);
  });

  it('puts base and child fields on every line; a message field overrides a bound one', () => {
    const { lines, log } = collect({}, { worker: 3 });
    log.child({ id: 9 }).info('closed', { how: 'eof' });
    log.child({ id: 9 }).info('again', { id: 10 });
    const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual({ worker: a!.worker, id: a!.id, how: a!.how }, { worker: 3, id: 9, how: 'eof' });
    assert.equal(b!.id, 10);
  });

  it('redacts a secret passed by mistake', () => {
    const { lines, log } = collect();
    log.info('login', { user: 'alice', password: 'hunter2', token: 'abc', authorization: 'Bearer abc' });
    assert.ok(!lines[0]!.includes('hunter2'));
    assert.ok(!lines[0]!.includes('abc'));
    assert.equal((JSON.parse(lines[0]!) as { user: string }).user, 'alice');
  });

  it('writes a readable line in pretty format', () => {
    const { lines, log } = collect({ format: 'pretty' });
    log.info('listening', { socks: '127.0.0.1:1080', kernel: { mptcp: true } });
    assert.match(lines[0]!, /^\d\d:\d\d:\d\d\.\d{3} INFO  listening socks=127\.0\.0\.1:1080 kernel=\{"mptcp":true\}\n$/);
  });

  it('knows its level names', () => {
    assert.equal(isLogLevel('debug'), true);
    assert.equal(isLogLevel('trace'), false);
    assert.equal(isLogLevel('toString'), false);
  });
});
