// A werift WebRTC peer as a program, for tests that run each peer in its own network namespace:
//   ip netns exec NS node --import tsx test/helpers/werift-peer.ts '{"iceServers":[...],"iceTransportPolicy":"all"}'
// The test is its signaling channel: commands arrive as JSON lines on stdin, events leave as JSON
// lines on stdout (the protocol is in werift.ts). It exits when told to close, or when stdin ends.
import { createInterface } from 'node:readline';
import { RTCPeerConnection, type RTCDataChannel } from 'werift';
import { selectedPair, type PeerCommand, type PeerConfig, type PeerEvent } from './werift.js';

const config = JSON.parse(process.argv[2] ?? '{}') as PeerConfig;

function emit(e: PeerEvent): void {
  process.stdout.write(JSON.stringify(e) + '\n');
}

const pc = new RTCPeerConnection({ iceServers: config.iceServers, iceTransportPolicy: config.iceTransportPolicy, iceUseIpv6: false });
let channel: RTCDataChannel | null = null;

pc.onicecandidate = ({ candidate }) => {
  // the end of gathering (null) is not signaled: werift does not need it from the other side
  if (candidate) emit({ event: 'candidate', candidate: candidate.toJSON() });
};
pc.onconnectionstatechange = () => emit({ event: 'state', connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState });

function useChannel(dc: RTCDataChannel): void {
  channel = dc;
  dc.onmessage = ({ data }) => emit({ event: 'message', data: typeof data === 'string' ? data : Buffer.from(data).toString() });
  if (dc.readyState === 'open') emit({ event: 'open' });
  else dc.onopen = () => emit({ event: 'open' });
}
pc.ondatachannel = ({ channel: dc }) => useChannel(dc);

async function handle(cmd: PeerCommand): Promise<void> {
  switch (cmd.cmd) {
    case 'offer': {
      useChannel(pc.createDataChannel('lab'));
      await pc.setLocalDescription(await pc.createOffer());
      emit({ event: 'description', description: { type: 'offer', sdp: pc.localDescription!.sdp } });
      return;
    }
    case 'description': {
      await pc.setRemoteDescription(cmd.description);
      if (cmd.description.type === 'offer') {
        await pc.setLocalDescription(await pc.createAnswer());
        emit({ event: 'description', description: { type: 'answer', sdp: pc.localDescription!.sdp } });
      }
      return;
    }
    case 'candidate':
      // werift holds a candidate that arrives before the remote description until it is set
      await pc.addIceCandidate(cmd.candidate);
      return;
    case 'send':
      if (!channel || channel.readyState !== 'open') throw new Error(`send before the data channel is open (${channel?.readyState ?? 'no channel'})`);
      channel.send(cmd.data);
      return;
    case 'selected':
      emit({ event: 'selected', pair: selectedPair(pc) });
      return;
    case 'close':
      await pc.close();
      process.exit(0);
  }
}

// one command at a time, in order: a candidate must not overtake the description before it
let queue = Promise.resolve();
createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === '') return;
    queue = queue.then(() => handle(JSON.parse(line) as PeerCommand)).catch((e: Error) => emit({ event: 'error', message: e.stack ?? e.message }));
  })
  .on('close', () => {
    void queue.then(() => pc.close()).finally(() => process.exit(0));
  });
emit({ event: 'ready' });
