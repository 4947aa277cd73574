// What the WebRTC tests read from a werift peer: the candidate pair its ICE agent nominated (werift
// has no RTCIceTransport.getSelectedCandidatePair(); src/peer/rtc.ts reads its `nominated`), and the
// JSON-lines protocol between a test and a peer program running in a lab namespace
// (test/helpers/werift-peer.ts): commands on its stdin, events on its stdout.
import { selectedPath, type CandidateView } from '../../src/peer/rtc.js';

export type { CandidateView };

export interface SelectedPair {
  local: CandidateView;
  remote: CandidateView;
}

/** The pair the peer's (first, bundled) ICE transport nominated, or null before ICE has nominated one (edgeward's peers read it the same way). */
export const selectedPair: (pc: Parameters<typeof selectedPath>[0]) => SelectedPair | null = selectedPath;

/** "relay 203.0.113.1:50000 -> srflx 198.51.100.2:40000", for messages. */
export function describePair(p: SelectedPair | null): string {
  if (!p) return 'no nominated pair';
  return `${p.local.type} ${p.local.address}:${p.local.port} -> ${p.remote.type} ${p.remote.address}:${p.remote.port}`;
}

/** How the peer program is configured (its only argument, as JSON). */
export interface PeerConfig {
  iceServers: Array<{ urls: string | string[]; username?: string; credential?: string }>;
  iceTransportPolicy: 'all' | 'relay';
}

export interface SessionDescriptionJson {
  type: 'offer' | 'answer';
  sdp: string;
}

export interface CandidateJson {
  candidate: string;
  sdpMid?: string;
  sdpMLineIndex?: number;
  usernameFragment?: string;
}

/** Test -> peer, one JSON object per stdin line. */
export type PeerCommand =
  | { cmd: 'offer' } // open a data channel and make an offer
  | { cmd: 'description'; description: SessionDescriptionJson } // the other side's offer (answered) or answer
  | { cmd: 'candidate'; candidate: CandidateJson }
  | { cmd: 'send'; data: string } // over the data channel, once it is open
  | { cmd: 'selected' } // report the nominated pair
  | { cmd: 'close' };

/** Peer -> test, one JSON object per stdout line. */
export type PeerEvent =
  | { event: 'ready' }
  | { event: 'description'; description: SessionDescriptionJson }
  | { event: 'candidate'; candidate: CandidateJson }
  | { event: 'open' }
  | { event: 'message'; data: string }
  | { event: 'state'; connectionState: string; iceConnectionState: string }
  | { event: 'selected'; pair: SelectedPair | null }
  | { event: 'error'; message: string };
