// The peers one UDP ASSOCIATE accepts replies from: bounded, so that a client spraying datagrams
// at many addresses cannot grow the gateway's memory for the life of its association.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_UDP_PEERS, RecentPeers } from '../../src/socks/udp.js';

describe('RecentPeers (UDP ASSOCIATE reply filter)', () => {
  it('holds at most MAX_UDP_PEERS peers however many distinct ones a client sends to', () => {
    const peers = new RecentPeers();
    for (let i = 0; i < 3 * MAX_UDP_PEERS; i++) peers.add(`127.1.${i >> 8}.${i & 255}`, 53);
    assert.equal(peers.size, MAX_UDP_PEERS);
  });

  it('forgets the peer contacted longest ago and keeps the newest', () => {
    const peers = new RecentPeers(3);
    peers.add('127.0.0.1', 1);
    peers.add('127.0.0.1', 2);
    peers.add('127.0.0.2', 1);
    peers.add('::1', 1);
    assert.equal(peers.size, 3);
    assert.equal(peers.has('127.0.0.1', 1), false, 'the oldest is forgotten: its replies are dropped');
    assert.equal(peers.has('127.0.0.1', 2), true);
    assert.equal(peers.has('::1', 1), true, 'the newest is kept');
  });

  it('counts a peer sent to again as recent, so a peer the client keeps talking to is not forgotten', () => {
    const peers = new RecentPeers(2);
    peers.add('127.0.0.1', 1);
    peers.add('127.0.0.1', 2);
    peers.add('127.0.0.1', 1);
    peers.add('127.0.0.1', 3);
    assert.equal(peers.has('127.0.0.1', 1), true);
    assert.equal(peers.has('127.0.0.1', 2), false);
    assert.equal(peers.size, 2);
  });

  it('tells address and port apart', () => {
    const peers = new RecentPeers();
    peers.add('127.0.0.1', 53);
    assert.equal(peers.has('127.0.0.1', 53), true);
    assert.equal(peers.has('127.0.0.1', 54), false);
    assert.equal(peers.has('127.0.0.2', 53), false);
  });
});
