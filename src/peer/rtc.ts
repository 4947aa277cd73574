// The peers' WebRTC side, on werift (pure TypeScript; TURN over UDP and TCP): a peer connection
// for one session with the ICE servers the signaling server handed out, its candidates sent
// through the session, and the candidate pair ICE chose (direct or relayed), which the user sees.
import { RTCPeerConnection } from 'werift';
import type { SignalFrame } from './signal-client.js';

/** ICE servers as the signaling server hands them out. */
export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

export interface RtcOptions {
  /** only relayed candidates (iceTransportPolicy "relay") */
  relayOnly?: boolean;
  /** which TURN transport to use: werift takes the first turn: URL it is given, so it goes first */
  turnTransport?: 'udp' | 'tcp';
  /** host candidates on these addresses too (werift leaves out loopback and lists every other interface) */
  iceAddresses?: string[];
  /** STUN/TURN servers of the user's choosing, used instead of the ones the signaling server hands out */
  iceServers?: IceServer[];
}

/** The ICE servers reordered so that werift, which uses one STUN and one TURN URL, takes the wanted ones. */
export function orderIceServers(servers: readonly IceServer[], turnTransport: 'udp' | 'tcp' = 'udp'): IceServer[] {
  const rank = (u: string): number => {
    if (u.startsWith('stun:')) return 0;
    if (u.startsWith('turn:')) return u.includes(`transport=${turnTransport}`) ? 1 : 2;
    return 3; // turns: (werift has no TURN over TLS)
  };
  return servers.map((s) => ({ ...s, urls: [...s.urls].filter((u) => rank(u) < 3).sort((a, b) => rank(a) - rank(b)) })).filter((s) => s.urls.length > 0);
}

/** A peer connection whose candidates go out through `sendCandidate`. */
export function newPeerConnection(iceServers: readonly IceServer[], opts: RtcOptions, sendCandidate: (c: object | null) => void): RTCPeerConnection {
  const pc = new RTCPeerConnection({
    iceServers: orderIceServers(opts.iceServers ?? iceServers, opts.turnTransport),
    iceTransportPolicy: opts.relayOnly ? 'relay' : 'all',
    iceUseIpv6: false,
    ...(opts.iceAddresses && opts.iceAddresses.length > 0 ? { iceAdditionalHostAddresses: opts.iceAddresses } : {}),
  });
  pc.onicecandidate = ({ candidate }) => {
    if (candidate) sendCandidate(candidate.toJSON());
  };
  return pc;
}

/** Applies a candidate frame; werift holds one that arrives before the remote description. */
export async function addCandidate(pc: RTCPeerConnection, frame: SignalFrame): Promise<void> {
  const c = frame.candidate as { candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null } | null;
  if (!c || c.candidate === '') return;
  await pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid ?? undefined, sdpMLineIndex: c.sdpMLineIndex ?? undefined });
}

export interface CandidateView {
  /** host, srflx, prflx or relay */
  type: string;
  address: string;
  port: number;
  protocol: string;
}

/** The pair ICE nominated, and whether it is relayed; null before there is one. */
export function selectedPath(pc: RTCPeerConnection): { local: CandidateView; remote: CandidateView; relayed: boolean } | null {
  const pair = pc.iceTransports[0]?.connection.nominated;
  if (!pair) return null;
  const view = (c: { type: string; host: string; port: number; transport: string }): CandidateView => ({ type: c.type, address: c.host, port: c.port, protocol: c.transport.toLowerCase() });
  const local = view(pair.localCandidate);
  const remote = view(pair.remoteCandidate);
  return { local, remote, relayed: local.type === 'relay' || remote.type === 'relay' };
}

/** "direct (srflx 198.51.100.2:40000 -> host 10.0.0.2:5000)" or "relayed (relay ... -> ...)". */
export function describePath(p: ReturnType<typeof selectedPath>): string {
  if (!p) return 'no path yet';
  const c = (v: CandidateView): string => `${v.type} ${v.address}:${v.port}`;
  return `${p.relayed ? 'relayed' : 'direct'} (${c(p.local)} -> ${c(p.remote)})`;
}

/** Resolves when the connection is up; rejects when it fails, closes, or `timeoutMs` passes. */
export function connected(pc: RTCPeerConnection, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no WebRTC connection within ${Math.round(timeoutMs / 1000)} s (ICE found no working path)`)), timeoutMs);
    const check = (): void => {
      if (pc.connectionState === 'connected') {
        clearTimeout(timer);
        resolve();
      } else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        clearTimeout(timer);
        reject(new Error(`the WebRTC connection ${pc.connectionState}`));
      }
    };
    pc.connectionStateChange.subscribe(check);
    check();
  });
}
