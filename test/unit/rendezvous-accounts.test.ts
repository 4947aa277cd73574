// The pure parts of rendezvous accounts and peers: the signaling frame parser (every frame a peer
// sends is checked before anything acts on it, and a bad one is named), login session tokens
// (expire, end, and end with their user), and the names files get on the device.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSignalMessage } from '../../src/rendezvous/signal-messages.js';
import { LoginSessions } from '../../src/auth/login-sessions.js';
import { safeFileName } from '../../src/peer/file-channel.js';

describe('signaling frames', () => {
  it('takes each message type in its schema', () => {
    for (const f of [
      { type: 'hello', role: 'device', token: 'ewd_x' },
      { type: 'hello', role: 'client', session: 'ews_x' },
      { type: 'devices' },
      { type: 'open', device: 'box', ref: 'r' },
      { type: 'offer', session: 'abc', sdp: 'v=0' },
      { type: 'answer', session: 'abc', sdp: 'v=0' },
      { type: 'candidate', session: 'abc', candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: null } },
      { type: 'candidate', session: 'abc', candidate: null },
      { type: 'close', session: 'abc', reason: 'done' },
    ]) {
      const r = parseSignalMessage(JSON.stringify(f));
      assert.ok(r.ok, `${JSON.stringify(f)}: ${r.ok ? '' : r.issue.message}`);
    }
  });

  it('refuses what is not JSON, not an object, an unknown type, a wrong field or an extra one, naming it', () => {
    const issue = (text: string): { code: string; message: string } => {
      const r = parseSignalMessage(text);
      assert.ok(!r.ok, text);
      return r.issue;
    };
    assert.equal(issue('{nope').code, 'bad_message');
    assert.equal(issue('[1,2]').code, 'bad_message');
    assert.equal(issue('"hello"').code, 'bad_message');
    assert.equal(issue('{"kind":"hello"}').code, 'bad_message');
    const unknown = issue('{"type":"__proto__"}');
    assert.equal(unknown.code, 'unknown_type', 'an inherited property is no message type');
    assert.match(issue('{"type":"teleport"}').message, /unknown message type "teleport"/);
    assert.match(issue('{"type":"offer","session":"abc","sdp":7}').message, /^offer: \/sdp /);
    assert.match(issue('{"type":"open","device":"box","admin":true}').message, /^open: /);
    assert.match(issue('{"type":"offer","session":"../x","sdp":"v=0"}').message, /\/session/);
    assert.equal(issue(JSON.stringify({ type: 'offer', session: 'abc', sdp: 'x'.repeat(40_000) })).code, 'bad_message', 'SDP is bounded');
    assert.equal(issue('{"type":"hello","role":"admin","token":"x"}').code, 'bad_message');
  });
});

describe('login sessions', () => {
  it('give a token that names its user until it expires', () => {
    let now = 1_000_000;
    const s = new LoginSessions(60_000, 100, () => now);
    const { token, expiresAt } = s.issue('alice');
    assert.match(token, /^ews_[A-Za-z0-9_-]{43}$/);
    assert.equal(expiresAt, now + 60_000);
    assert.equal(s.userOf(token), 'alice');
    assert.equal(s.userOf(`${token}x`), null);
    assert.equal(s.userOf('ewd_devicetoken'), null);
    now += 60_000;
    assert.equal(s.userOf(token), null, 'expired');
  });

  it('end one session, or all of a user, and hold at most their bound (the oldest go)', () => {
    const s = new LoginSessions(60_000, 3);
    const a1 = s.issue('alice').token;
    const a2 = s.issue('alice').token;
    const b = s.issue('bob').token;
    assert.equal(s.end(a1), true);
    assert.equal(s.userOf(a1), null);
    s.endUser('alice');
    assert.equal(s.userOf(a2), null);
    assert.equal(s.userOf(b), 'bob');
    s.issue('c');
    s.issue('d');
    s.issue('e');
    assert.equal(s.size, 3);
    assert.equal(s.userOf(b), null, 'the oldest was dropped for the bound');
  });
});

describe('file names on the device', () => {
  it('keep only a base name of ordinary characters, never a hidden or empty one', () => {
    assert.equal(safeFileName('report.pdf'), 'report.pdf');
    assert.equal(safeFileName('../../etc/passwd'), 'passwd');
    assert.equal(safeFileName('C:\\Users\\x\\evil.exe'), 'evil.exe');
    assert.equal(safeFileName('.bashrc'), 'bashrc');
    assert.equal(safeFileName('..'), 'file');
    assert.equal(safeFileName(''), 'file');
    assert.equal(safeFileName('a\u0000b;rm -rf $(x).txt'), 'a_b_rm -rf __x_.txt');
    assert.ok(safeFileName('x'.repeat(500)).length <= 200);
  });
});
