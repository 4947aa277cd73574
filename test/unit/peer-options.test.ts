// The options of `edgeward peer`: what a user types for services, forwards and their own STUN/TURN
// servers, and the error each mistake gets (naming the option and what was expected).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseExpose, parseForward, parseIceServers } from '../../src/cli/peer.js';

describe('edgeward peer options', () => {
  it('reads --expose and --forward, and names the option in the error', () => {
    assert.deepEqual(parseExpose('ssh=tcp:127.0.0.1:22'), ['ssh', { host: '127.0.0.1', port: 22 }]);
    assert.deepEqual(parseForward('2222=ssh'), { host: '127.0.0.1', port: 2222, service: 'ssh' });
    assert.throws(() => parseExpose('ssh=127.0.0.1:22'), /--expose ssh=127.0.0.1:22: expected NAME=tcp:HOST:PORT/);
    assert.throws(() => parseExpose('ssh=tcp:127.0.0.1:0'), /--expose ssh=tcp:127.0.0.1:0/);
    assert.throws(() => parseForward('2222'), /--forward 2222: expected \[HOST:\]PORT=NAME/);
  });

  it('reads --ice-server: STUN alone, TURN with a user name and the credential from the environment', () => {
    assert.equal(parseIceServers([], undefined, undefined), undefined, 'no --ice-server: the server hands them out');
    assert.deepEqual(parseIceServers(['stun:192.0.2.1:3478', 'turn:192.0.2.1:3478?transport=tcp', 'turn:[2001:db8::1]:3478'], 'me', 'pw'), [
      { urls: ['stun:192.0.2.1:3478'] },
      { urls: ['turn:192.0.2.1:3478?transport=tcp'], username: 'me', credential: 'pw' },
      { urls: ['turn:[2001:db8::1]:3478?transport=udp'], username: 'me', credential: 'pw' },
    ]);
  });

  it('refuses an --ice-server it cannot use, saying why', () => {
    assert.throws(() => parseIceServers(['turn:192.0.2.1:3478'], undefined, 'pw'), /needs --ice-username/);
    assert.throws(() => parseIceServers(['turn:192.0.2.1:3478'], 'me', undefined), /EDGEWARD_ICE_CREDENTIAL/);
    assert.throws(() => parseIceServers(['turns:192.0.2.1:5349'], 'me', 'pw'), /TURN over TLS \(turns:\) is not supported/);
    assert.throws(() => parseIceServers(['http://192.0.2.1'], 'me', 'pw'), /--ice-server http:\/\/192.0.2.1: expected stun:HOST:PORT/);
    assert.throws(() => parseIceServers(['stun:192.0.2.1:3478?transport=sctp'], 'me', 'pw'), /expected stun:HOST:PORT/);
    assert.throws(() => parseIceServers([], 'me', undefined), /--ice-username is given without --ice-server/);
  });
});
