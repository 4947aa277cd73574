// `edgeward peer device`: runs on the device, keeps its presence connection to the rendezvous
// server, answers every session a client of its user opens, and serves the services it exposes:
// each data channel "tcp:NAME" becomes a TCP connection to NAME's address. Nothing else on the
// device is reachable: a channel for a service it does not expose gets "error:" and closes.
import net from 'node:net';
import type { RTCDataChannel, RTCPeerConnection } from 'werift';
import { SignalClient, type SignalFrame } from './signal-client.js';
import { addCandidate, connected, describePath, newPeerConnection, selectedPath, type IceServer, type RtcOptions } from './rtc.js';
import { receiveFile } from './file-channel.js';
import { pipeStream } from './stream-channel.js';

/** Close codes after which a device does not connect again (signaling.ts CloseCode). */
const FINAL_CLOSES = new Map<number, string>([
  [4401, 'the server does not know this device token'],
  [4409, 'another process connected with this device token'],
  [4410, 'the device was removed'],
]);
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;

export interface DeviceOptions extends RtcOptions {
  server: string;
  token: string;
  /** service name -> where it listens on (or near) the device */
  expose: Map<string, { host: string; port: number }>;
  /** where files sent to the device land (channel "file"); absent: files are refused */
  files?: string;
  /** one line per event, for the user */
  log(line: string): void;
}

interface DeviceSession {
  pc: RTCPeerConnection;
  user: string;
}

/** Runs until `stop` is called or the server refuses the device for good (then it rejects). */
export function runDevice(opts: DeviceOptions): { stop(): void; done: Promise<void> } {
  const sessions = new Map<string, DeviceSession>();
  let stopped = false;
  let backoff = BACKOFF_MIN_MS;
  let client: SignalClient | null = null;
  let timer: NodeJS.Timeout | null = null;
  let finish: (e?: Error) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => (finish = (e) => (e ? reject(e) : resolve())));

  const endSession = (id: string, why: string): void => {
    const s = sessions.get(id);
    if (!s) return;
    sessions.delete(id);
    void s.pc.close();
    opts.log(`session ${id} of ${s.user} ended: ${why}`);
  };

  const serve = (id: string, dc: RTCDataChannel): void => {
    const user = sessions.get(id)?.user ?? '?';
    if (dc.label === 'text') {
      dc.onmessage = ({ data }) => {
        const text = typeof data === 'string' ? data : data.toString('utf8');
        opts.log(`session ${id}: text from ${user}: ${text.slice(0, 2000)}`);
        dc.send(`received ${text.length} characters`);
      };
      return;
    }
    if (dc.label === 'file') {
      receiveFile(dc, opts.files, (line) => opts.log(`session ${id}: ${line}`));
      return;
    }
    if (!dc.label.startsWith('tcp:')) return; // "control" only keeps the association up
    const name = dc.label.slice(4);
    const target = opts.expose.get(name);
    if (!target) {
      const refuse = (): void => {
        dc.send(`error:this device exposes no service "${name}"`);
        dc.close();
      };
      if (dc.readyState === 'open') refuse();
      else dc.stateChanged.subscribe((st) => st === 'open' && refuse());
      opts.log(`session ${id}: refused a stream to unknown service "${name}"`);
      return;
    }
    const socket = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    void pipeStream(socket, dc).then((r) => opts.log(`session ${id}: stream to ${name} closed (${r.sent} bytes to the client, ${r.received} from it${r.error ? `; ${r.error}` : ''})`));
  };

  const onFrame = (f: SignalFrame): void => {
    const id = typeof f.session === 'string' ? f.session : '';
    switch (f.type) {
      case 'session': {
        const pc = newPeerConnection(f.iceServers as IceServer[], opts, (candidate) => client?.send({ type: 'candidate', session: id, candidate }));
        sessions.set(id, { pc, user: String(f.user) });
        pc.ondatachannel = ({ channel }) => serve(id, channel);
        connected(pc, 60_000).then(
          () => {
            const path = selectedPath(pc);
            opts.log(`session ${id} of ${String(f.user)}: connected, ${describePath(path)}`);
            // the operators' view of the hub shows each session's path
            if (path) client?.send({ type: 'path', session: id, ...path });
          },
          (e: Error) => endSession(id, e.message),
        );
        opts.log(`session ${id}: ${String(f.user)} connects`);
        return;
      }
      case 'offer': {
        const s = sessions.get(id);
        if (!s) return;
        void (async () => {
          await s.pc.setRemoteDescription({ type: 'offer', sdp: String(f.sdp) });
          await s.pc.setLocalDescription(await s.pc.createAnswer());
          client?.send({ type: 'answer', session: id, sdp: s.pc.localDescription!.sdp });
        })().catch((e: Error) => endSession(id, `bad offer: ${e.message}`));
        return;
      }
      case 'candidate': {
        const s = sessions.get(id);
        if (s) void addCandidate(s.pc, f).catch(() => undefined);
        return;
      }
      case 'closed':
        endSession(id, String(f.reason));
        return;
      case 'error':
        opts.log(`server: ${String(f.code)}: ${String(f.message)}`);
        return;
    }
  };

  const connect = (): void => {
    if (stopped) return;
    client = new SignalClient({
      server: opts.server,
      hello: { role: 'device', token: opts.token },
      onFrame,
      onClose: (code, reason) => {
        for (const id of [...sessions.keys()]) endSession(id, 'signaling connection lost');
        const final = FINAL_CLOSES.get(code);
        if (final) {
          stopped = true;
          finish(new Error(`${final} (${code} ${reason})`));
          return;
        }
        if (!stopped) again(`signaling connection closed (${code}${reason ? ` ${reason}` : ''})`);
      },
    });
    client.connect().then(
      (welcome) => {
        backoff = BACKOFF_MIN_MS;
        const d = welcome.device as { id: number; name: string };
        opts.log(`online as device ${d.name} of ${String(welcome.user)} (id ${d.id}); exposing ${[...opts.expose.keys()].join(', ') || 'nothing'}`);
      },
      (e: Error) => {
        if (/unknown device token/.test(e.message)) {
          stopped = true;
          finish(new Error(`the server does not know this device token: ${e.message}`));
          return;
        }
        again(e.message);
      },
    );
  };
  const again = (why: string): void => {
    opts.log(`${why}; connecting again in ${Math.round(backoff / 1000)} s`);
    timer = setTimeout(connect, backoff);
    backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
  };
  connect();
  return {
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      for (const id of [...sessions.keys()]) endSession(id, 'the device stops');
      client?.close();
      finish();
    },
    done,
  };
}
