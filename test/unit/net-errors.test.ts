// The one errno -> reason mapping (net/errors.ts), and the SOCKS replies and statistics names built
// on it (socks/replies.ts): a SOCKS client gets the reply, and /api/v1/stats the name, it always did.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { Socks5Reply } from '../../src/codec/socks.js';
import { CONNECT_FAILURES, connectFailure } from '../../src/net/errors.js';
import { replyForError, replyName } from '../../src/socks/replies.js';
import { UpstreamError } from '../../src/transport/upstream.js';

const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });

/** errno/getaddrinfo code -> [reason, SOCKS reply, name counted for a SOCKS failure] */
const TABLE: Array<[string, string, Socks5Reply, string]> = [
  ['ECONNREFUSED', 'connection_refused', Socks5Reply.CONNECTION_REFUSED, 'connection_refused'],
  ['ENETUNREACH', 'network_unreachable', Socks5Reply.NETWORK_UNREACHABLE, 'network_unreachable'],
  ['ENETDOWN', 'network_unreachable', Socks5Reply.NETWORK_UNREACHABLE, 'network_unreachable'],
  ['EHOSTUNREACH', 'host_unreachable', Socks5Reply.HOST_UNREACHABLE, 'host_unreachable'],
  ['EHOSTDOWN', 'host_unreachable', Socks5Reply.HOST_UNREACHABLE, 'host_unreachable'],
  ['ENOTFOUND', 'host_unreachable', Socks5Reply.HOST_UNREACHABLE, 'host_unreachable'],
  ['EAI_NONAME', 'host_unreachable', Socks5Reply.HOST_UNREACHABLE, 'host_unreachable'],
  ['EAI_NODATA', 'host_unreachable', Socks5Reply.HOST_UNREACHABLE, 'host_unreachable'],
  ['EAI_AGAIN', 'host_unreachable', Socks5Reply.HOST_UNREACHABLE, 'host_unreachable'],
  ['EADDRNOTAVAIL', 'host_unreachable', Socks5Reply.HOST_UNREACHABLE, 'host_unreachable'],
  ['ETIMEDOUT', 'timed_out', Socks5Reply.TTL_EXPIRED, 'ttl_expired'],
  ['EACCES', 'not_allowed', Socks5Reply.NOT_ALLOWED, 'not_allowed'],
  ['EPERM', 'not_allowed', Socks5Reply.NOT_ALLOWED, 'not_allowed'],
  ['EMFILE', 'general_failure', Socks5Reply.GENERAL_FAILURE, 'general_failure'],
];

describe('connect failures: one mapping from errno', () => {
  for (const [code, reason, reply, name] of TABLE) {
    it(`${code}: reason ${reason}, SOCKS reply ${reply} counted as ${name}`, () => {
      assert.equal(connectFailure(errno(code)), reason);
      assert.equal(replyForError(errno(code)), reply);
      assert.equal(replyName(replyForError(errno(code))), name);
    });
  }

  it('gives general_failure for an error without a code, a code it does not know, or no error at all', () => {
    for (const e of [new Error('x'), errno('toString'), errno('constructor'), { code: 42 }, null, undefined, 'ECONNREFUSED']) {
      assert.equal(connectFailure(e), 'general_failure', String(e));
      assert.equal(replyForError(e), Socks5Reply.GENERAL_FAILURE);
    }
  });

  it('names the reason of every code it maps among CONNECT_FAILURES', () => {
    for (const [code] of TABLE) assert.ok(CONNECT_FAILURES.includes(connectFailure(errno(code))));
    assert.ok(CONNECT_FAILURES.includes(connectFailure(new UpstreamError(Socks5Reply.HOST_UNREACHABLE, 'x'))));
  });

  it("passes a chained upstream's own reply on to a SOCKS client, and tells the other services only that the upstream failed", () => {
    const e = new UpstreamError(Socks5Reply.CONNECTION_REFUSED, 'upstream answered reply 5');
    assert.equal(replyForError(e), Socks5Reply.CONNECTION_REFUSED);
    assert.equal(replyName(replyForError(e)), 'connection_refused');
    assert.equal(replyForError(new UpstreamError(Socks5Reply.TTL_EXPIRED, 'x')), Socks5Reply.TTL_EXPIRED);
    assert.equal(connectFailure(e), 'upstream_failed');
  });

  it('names a real refused connect on loopback connection_refused', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((r) => server.close(() => r()));
    const err = await new Promise<unknown>((resolve) => net.connect(port, '127.0.0.1').once('error', resolve));
    assert.equal(connectFailure(err), 'connection_refused');
  });
});
