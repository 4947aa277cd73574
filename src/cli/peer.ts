// `edgeward peer device|connect`: the two ends of a rendezvous session. The device publishes named
// local TCP services; the client forwards local ports to them, over a WebRTC connection set up
// through the rendezvous server (direct when the NATs allow, relayed through TURN when not; DTLS
// end to end, so the server and the relay see only ciphertext).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { parseArgs } from 'node:util';
import { apiCommand, UsageError } from './api-command.js';
import type { Command } from './command.js';
import { promptHidden, readPasswordFromStdin } from './password.js';
import { parseListenAddress } from '../config/common.js';
import { runConnect, type Forward } from '../peer/connect.js';
import { runDevice } from '../peer/device.js';
import type { IceServer, RtcOptions } from '../peer/rtc.js';

const usage = `Usage: edgeward peer <device|connect> [options]

  edgeward peer device --server URL (--token T | --token-file FILE) --expose NAME=tcp:HOST:PORT ...
      runs on the device: stays online with the rendezvous server (connecting again when the
      connection drops) and serves the exposed services to its user's clients, and nothing else
  edgeward peer connect DEVICE --server URL --user USER --forward [HOST:]PORT=NAME ... [--status]
      runs on the client: logs in (the password from --password-stdin, EDGEWARD_PASSWORD, or a
      prompt), opens a session to the device and forwards each local port (loopback unless HOST
      is given) to the device's service NAME; prints whether the path is direct or relayed

Options:
  --server URL         the edgeward API (http://HOST:PORT or https://; a self-signed certificate
                       is trusted with NODE_EXTRA_CA_CERTS=FILE)
  --token T            the device token from "edgeward device add" (EDGEWARD_DEVICE_TOKEN also works,
                       and keeps it out of the process list)
  --token-file FILE    read the device token from FILE
  --expose NAME=tcp:HOST:PORT   a service of the device, repeatable (e.g. ssh=tcp:127.0.0.1:22)
  --files DIR          files sent to the device (the /rendezvous page) land in DIR (never
                       overwriting one there); without it, files are refused
  --user USER          the user to log in as (edgeward user add USER --rendezvous)
  --password-stdin     read the password from the first line of standard input
  --forward [HOST:]PORT=NAME    a local port for the device's service NAME, repeatable (e.g. 2222=ssh)
  --status             print the path as a JSON line on standard output when it is set up or changes
  --relay-only         use relayed (TURN) candidates only (an error without a TURN server)
  --turn-transport udp|tcp   which TURN transport to use (default udp; tcp where UDP is blocked)
  --timeout SEC        how long to wait for the WebRTC connection (default 30)
  --ice-address ADDR   offer a host candidate on ADDR too, repeatable (the interfaces' addresses are
                       offered anyway, loopback is not: 127.0.0.1 for two peers on one machine)
  --ice-server URL     use this STUN or TURN server instead of the ones the rendezvous server hands
                       out, repeatable (stun:HOST:PORT, turn:HOST:PORT?transport=udp|tcp; your own
                       coturn, say). TURN needs --ice-username and the password in
                       EDGEWARD_ICE_CREDENTIAL (never on the command line)
  --ice-username NAME  the user name for the --ice-server TURN servers

Exit status: 0 stopped by a signal, 1 the session could not be set up or ended, 2 usage error.
`;

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        server: { type: 'string' },
        token: { type: 'string' },
        'token-file': { type: 'string' },
        expose: { type: 'string', multiple: true },
        user: { type: 'string' },
        'password-stdin': { type: 'boolean' },
        forward: { type: 'string', multiple: true },
        status: { type: 'boolean' },
        'relay-only': { type: 'boolean' },
        'turn-transport': { type: 'string' },
        timeout: { type: 'string' },
        'ice-address': { type: 'string', multiple: true },
        'ice-server': { type: 'string', multiple: true },
        'ice-username': { type: 'string' },
        files: { type: 'string' },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function need(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

/** NAME=tcp:HOST:PORT */
export function parseExpose(text: string): [string, { host: string; port: number }] {
  const m = /^([A-Za-z0-9._-]{1,64})=tcp:(.+)$/.exec(text);
  if (!m) throw new UsageError(`--expose ${text}: expected NAME=tcp:HOST:PORT (e.g. ssh=tcp:127.0.0.1:22)`);
  try {
    const at = parseListenAddress(m[2]!, `--expose ${m[1]}`);
    if (at.port === 0) throw new Error('port 0');
    return [m[1]!, at];
  } catch (e) {
    throw new UsageError(`--expose ${text}: ${(e as Error).message}`);
  }
}

/** [HOST:]PORT=NAME */
export function parseForward(text: string): Forward {
  const m = /^(.+)=([A-Za-z0-9._-]{1,64})$/.exec(text);
  if (!m) throw new UsageError(`--forward ${text}: expected [HOST:]PORT=NAME (e.g. 2222=ssh)`);
  try {
    const at = parseListenAddress(m[1]!, '--forward');
    return { host: at.host, port: at.port, service: m[2]! };
  } catch (e) {
    throw new UsageError(`--forward ${text}: ${(e as Error).message}`);
  }
}

/** --ice-server URL... with --ice-username and EDGEWARD_ICE_CREDENTIAL: the servers werift can use */
export function parseIceServers(urls: readonly string[], username: string | undefined, credential: string | undefined): IceServer[] | undefined {
  if (urls.length === 0) {
    if (username !== undefined) throw new UsageError('--ice-username is given without --ice-server');
    return undefined;
  }
  const servers: IceServer[] = [];
  for (const url of urls) {
    const m = /^(stun|turn):([^?\s]+)(?:\?transport=(udp|tcp))?$/.exec(url);
    if (!m) {
      if (url.startsWith('turns:')) throw new UsageError(`--ice-server ${url}: TURN over TLS (turns:) is not supported by the peers' WebRTC stack; use turn:HOST:PORT?transport=tcp`);
      throw new UsageError(`--ice-server ${url}: expected stun:HOST:PORT or turn:HOST:PORT[?transport=udp|tcp]`);
    }
    try {
      if (parseListenAddress(m[2]!, '--ice-server').port === 0) throw new Error('port 0');
    } catch (e) {
      throw new UsageError(`--ice-server ${url}: ${(e as Error).message}`);
    }
    if (m[1] === 'stun') {
      servers.push({ urls: [url] });
      continue;
    }
    if (!username) throw new UsageError(`--ice-server ${url}: a TURN server needs --ice-username`);
    if (!credential) throw new UsageError(`--ice-server ${url}: a TURN server needs its password in EDGEWARD_ICE_CREDENTIAL`);
    servers.push({ urls: [m[3] ? url : `${url}?transport=udp`], username, credential });
  }
  return servers;
}

function rtcOptions(values: ReturnType<typeof parse>['values']): RtcOptions & { relayOnly: boolean; turnTransport: 'udp' | 'tcp'; iceAddresses: string[] } {
  const t = values['turn-transport'] ?? 'udp';
  if (t !== 'udp' && t !== 'tcp') throw new UsageError(`--turn-transport must be udp or tcp, got "${t}"`);
  const iceAddresses = values['ice-address'] ?? [];
  for (const a of iceAddresses) if (!isIPv4(a)) throw new UsageError(`--ice-address ${a}: an IPv4 address is expected`);
  const iceServers = parseIceServers(values['ice-server'] ?? [], values['ice-username'], process.env.EDGEWARD_ICE_CREDENTIAL);
  return { relayOnly: values['relay-only'] === true, turnTransport: t, iceAddresses, ...(iceServers ? { iceServers } : {}) };
}

const log = (line: string): void => void process.stderr.write(`${new Date().toISOString()} ${line}\n`);

/** Resolves on SIGINT or SIGTERM. */
function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

async function device(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const server = need(values.server, '--server');
  let token = values.token ?? process.env.EDGEWARD_DEVICE_TOKEN ?? '';
  if (values['token-file'] !== undefined) token = readFileSync(values['token-file'], 'utf8').trim();
  if (token === '') throw new UsageError('the device token is required: --token T, --token-file FILE or EDGEWARD_DEVICE_TOKEN');
  const expose = new Map((values.expose ?? []).map(parseExpose));
  if (expose.size === 0 && values.files === undefined) throw new UsageError('--expose NAME=tcp:HOST:PORT is required (at least one service), or --files DIR');
  const files = values.files;
  if (files !== undefined && !(existsSync(files) && statSync(files).isDirectory())) throw new UsageError(`--files ${files}: not a directory`);
  const running = runDevice({ server, token, expose, log, ...(files !== undefined ? { files } : {}), ...rtcOptions(values) });
  const stopped = untilSignal().then(() => running.stop());
  try {
    await Promise.race([running.done, stopped]);
    return 0;
  } catch (e) {
    process.stderr.write(`edgeward peer device: ${(e as Error).message}\n`);
    return 1;
  }
}

async function connect(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing DEVICE' : `unexpected argument "${positionals[1]}"`);
  const server = need(values.server, '--server');
  const user = need(values.user, '--user');
  const forwards = (values.forward ?? []).map(parseForward);
  if (forwards.length === 0) throw new UsageError('--forward [HOST:]PORT=NAME is required (at least one)');
  const timeout = values.timeout === undefined ? 30 : Number(values.timeout);
  if (!(timeout > 0 && timeout <= 600)) throw new UsageError(`--timeout must be 1-600 seconds, got "${values.timeout}"`);
  let password = process.env.EDGEWARD_PASSWORD ?? '';
  if (values['password-stdin']) password = await readPasswordFromStdin();
  else if (password === '') {
    if (!process.stdin.isTTY) throw new UsageError('no password: give it on standard input with --password-stdin, or in EDGEWARD_PASSWORD');
    password = await promptHidden(`password for ${user}: `);
  }
  try {
    const running = await runConnect({
      server,
      user,
      password,
      device: positionals[0]!,
      forwards,
      connectTimeoutMs: timeout * 1000,
      log,
      ...rtcOptions(values),
      ...(values.status ? { onPath: (p) => void process.stdout.write(`${JSON.stringify({ path: p.relayed ? 'relayed' : 'direct', local: p.local, remote: p.remote })}\n`) } : {}),
    });
    for (const l of running.listening) log(`forwarding ${l.host}:${l.port} to ${positionals[0]}'s ${l.service}`);
    const why = await Promise.race([running.ended, untilSignal().then(() => 'signal')]);
    running.stop();
    if (why === 'signal') return 0;
    process.stderr.write(`edgeward peer connect: ${why}\n`);
    return 1;
  } catch (e) {
    process.stderr.write(`edgeward peer connect: ${(e as Error).message}\n`);
    return 1;
  }
}

const dispatch = apiCommand('peer', 'the two ends of a rendezvous session: a device serving local services, a client forwarding ports to them', usage, { device, connect });

export const command: Command = {
  ...dispatch,
  async run(args: string[]): Promise<number> {
    let code: number;
    try {
      code = await dispatch.run(args);
    } catch (e) {
      process.stderr.write(`edgeward peer ${args[0] ?? ''}: ${(e as Error).message}\n`);
      code = 1;
    }
    // werift keeps timers and sockets of a closed peer connection: the session is over, so the
    // process ends here rather than when they run out
    process.stderr.write('', () => process.exit(code));
    return code;
  },
};
