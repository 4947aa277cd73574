// `edgeward peer connect DEVICE`: runs on the client. Logs in as the user, opens a session to the
// user's device through the signaling server, sets up the WebRTC connection (direct when the NATs
// allow, relayed through TURN when not; DTLS either way), and forwards local TCP ports to the
// device's services: every accepted connection becomes a data channel "tcp:SERVICE".
import net from 'node:net';
import type { RTCPeerConnection } from 'werift';
import { SignalClient, type SignalFrame } from './signal-client.js';
import { addCandidate, connected, describePath, newPeerConnection, selectedPath, type IceServer, type RtcOptions } from './rtc.js';
import { pipeStream } from './stream-channel.js';

export interface Forward {
  host: string;
  port: number;
  service: string;
}

export interface ConnectOptions extends RtcOptions {
  server: string;
  user: string;
  password: string;
  device: string;
  forwards: Forward[];
  /** ms to wait for the WebRTC connection */
  connectTimeoutMs: number;
  log(line: string): void;
  /** called with the chosen path once connected, and again whenever it changes */
  onPath?(path: NonNullable<ReturnType<typeof selectedPath>>): void;
}

export interface RunningConnect {
  /** the local addresses the forwards listen on (port 0 resolved) */
  listening: Array<{ host: string; port: number; service: string }>;
  /** resolves with the reason when the session ends */
  ended: Promise<string>;
  stop(): void;
}

/** Logs in: the session token, or an Error with the server's message. */
export async function login(server: string, user: string, password: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(new URL('/api/v1/rendezvous/login', server), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: user, password }), signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    throw new Error(`cannot reach ${server}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}`);
  }
  const body = (await res.json().catch(() => ({}))) as { token?: string; error?: { message?: string } };
  if (!res.ok || !body.token) throw new Error(`login as ${user} refused (${res.status}): ${body.error?.message ?? 'no token in the answer'}`);
  return body.token;
}

/** Opens the session and the forwards; rejects when any of that fails. */
export async function runConnect(opts: ConnectOptions): Promise<RunningConnect> {
  const session = await login(opts.server, opts.user, opts.password);
  let pc: RTCPeerConnection | null = null;
  let sessionId = '';
  let endedWith: (why: string) => void = () => undefined;
  const ended = new Promise<string>((resolve) => (endedWith = resolve));
  let opened: (f: SignalFrame) => void = () => undefined;
  let refused: (e: Error) => void = () => undefined;
  const openedFrame = new Promise<SignalFrame>((resolve, reject) => {
    opened = resolve;
    refused = reject;
  });
  const signal = new SignalClient({
    server: opts.server,
    hello: { role: 'client', session },
    onFrame: (f) => {
      if (f.type === 'opened') opened(f);
      else if (f.type === 'error' && f.for === 'open') refused(new Error(`the server refused the session: ${String(f.code)}: ${String(f.message)}`));
      else if (f.type === 'answer' && f.session === sessionId) void pc?.setRemoteDescription({ type: 'answer', sdp: String(f.sdp) }).catch((e: Error) => endedWith(`bad answer: ${e.message}`));
      else if (f.type === 'candidate' && f.session === sessionId && pc) void addCandidate(pc, f).catch(() => undefined);
      else if (f.type === 'closed' && f.session === sessionId) endedWith(`the session ended: ${String(f.reason)}`);
    },
    onClose: (code, reason) => endedWith(`the signaling connection closed (${code}${reason ? ` ${reason}` : ''})`),
  });
  await signal.connect();
  signal.send({ type: 'open', device: opts.device });
  const o = await Promise.race([openedFrame, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the server did not answer the open within 10 s')), 10_000))]);
  sessionId = String(o.session);
  const iceServers = opts.iceServers ?? (o.iceServers as IceServer[]);
  if (opts.relayOnly && !iceServers.some((s) => s.urls.some((u) => u.startsWith('turn:')))) {
    // without a TURN server there is no relayed candidate, and a relay-only session cannot be had
    signal.send({ type: 'close', session: sessionId, reason: 'the client has no TURN server' });
    signal.close();
    throw new Error('--relay-only needs a TURN server: the rendezvous server handed out none (it needs --turn-secret, or the user TURN access: edgeward user add NAME --turn), or give one with --ice-server');
  }
  const peer = newPeerConnection(o.iceServers as IceServer[], opts, (candidate) => signal.send({ type: 'candidate', session: sessionId, candidate }));
  pc = peer;
  // one channel from the start, so that the offer carries the data channels' association
  peer.createDataChannel('control');
  await peer.setLocalDescription(await peer.createOffer());
  signal.send({ type: 'offer', session: sessionId, sdp: peer.localDescription!.sdp });
  try {
    await Promise.race([connected(peer, opts.connectTimeoutMs), ended.then((why) => Promise.reject(new Error(why)))]);
  } catch (e) {
    void peer.close();
    signal.close();
    throw e;
  }
  let shown = '';
  const showPath = (): void => {
    const p = selectedPath(peer);
    if (!p) return;
    const text = describePath(p);
    if (text === shown) return;
    shown = text;
    opts.log(`connected to ${opts.device}: ${text}`);
    signal.send({ type: 'path', session: sessionId, ...p });
    opts.onPath?.(p);
  };
  showPath();
  const pathTimer = setInterval(showPath, 5000);
  pathTimer.unref();
  peer.connectionStateChange.subscribe((st) => {
    if (st === 'failed' || st === 'closed') endedWith(`the WebRTC connection ${st}`);
  });

  const servers: net.Server[] = [];
  const listening: RunningConnect['listening'] = [];
  try {
    for (const fwd of opts.forwards) {
      const server = net.createServer({ allowHalfOpen: true }, (socket) => {
        const dc = peer.createDataChannel(`tcp:${fwd.service}`);
        void pipeStream(socket, dc).then((r) => {
          if (r.error) opts.log(`${fwd.service}: ${r.error}`);
        });
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(fwd.port, fwd.host, () => resolve());
      });
      servers.push(server);
      listening.push({ host: fwd.host, port: (server.address() as net.AddressInfo).port, service: fwd.service });
    }
  } catch (e) {
    for (const s of servers) s.close();
    void peer.close();
    signal.close();
    throw new Error(`--forward: ${(e as Error).message}`);
  }
  const stop = (): void => {
    clearInterval(pathTimer);
    for (const s of servers) s.close();
    signal.send({ type: 'close', session: sessionId, reason: 'the client stops' });
    void peer.close();
    signal.close();
    endedWith('stopped');
  };
  void ended.then(() => {
    clearInterval(pathTimer);
    for (const s of servers) s.close();
  });
  return { listening, ended, stop };
}
