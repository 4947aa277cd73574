// `edgeward turn ...`: TURN credentials and allocations of the rendezvous service, through the REST API.
import { formatHostPort } from '../net/address.js';
import { clientFromEnv, ENV_HELP } from './api-client.js';
import { apiCommand, onePositional, optionalSeconds, parseOptions, printList, UsageError } from './api-command.js';
import type { Command } from './command.js';

const usage = `Usage: edgeward turn <credentials|allocations|end> [options]

The TURN server of "edgeward start --turn ADDR --turn-secret SECRET".

  edgeward turn credentials USER [--ttl SECONDS] [--json]
      a TURN REST credential for USER (username EXPIRY:USER, password from the newest secret),
      valid --ttl seconds (default 86400, 60..604800), with the turn: URIs to put in iceServers
  edgeward turn allocations [--json]
      the allocations open now: user, client, how the client talks and what the relay carries
      (udp, tcp, tls / udp, tcp), relayed address, permissions, channels, bytes, time left
  edgeward turn end ID
      end an allocation now

Options:
  --ttl SECONDS      credentials: how long the credential is valid
  --json             print JSON
  --data DIR         data directory of edgeward start, for DATA/api-token (default ./.edgeward)

${ENV_HELP}
Exit status: 0 ok, 1 failure (the API said no, or cannot be reached), 2 usage error.
`;

async function credentials(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { ttl: { type: 'string' }, json: { type: 'boolean' } });
  const user = onePositional(positionals, 'USER');
  const ttl = optionalSeconds(values.ttl, 'ttl');
  const c = await clientFromEnv(values.data).request<{ username: string; password: string; ttl: number; uris: string[] }>('POST', '/api/v1/turn/credentials', ttl === undefined ? { user } : { user, ttl });
  if (values.json) process.stdout.write(`${JSON.stringify(c, null, 2)}\n`);
  else process.stdout.write(`username ${c.username}\npassword ${c.password}\nttl      ${c.ttl}\nuris     ${c.uris.join(' ')}\n`);
  return 0;
}

interface AllocationView {
  id: number;
  user: string;
  client: { address: string; port: number };
  transport: string;
  relayProtocol: string;
  relayed: { address: string; port: number };
  additionalRelayed?: { address: string; port: number };
  permissions: string[];
  channels: number;
  bytes: { up: number; down: number };
  secondsLeft: number;
}

async function allocations(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { json: { type: 'boolean' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const { allocations: list } = await clientFromEnv(values.data).request<{ allocations: AllocationView[] }>('GET', '/api/v1/turn/allocations');
  const addr = (a: { address: string; port: number }): string => formatHostPort(a.address, a.port);
  printList(list, {
    json: values.json === true,
    empty: 'no allocations',
    head: ['ID', 'USER', 'CLIENT', 'CLIENT/RELAY', 'RELAYED', 'PERMS', 'CHANNELS', 'BYTES UP/DOWN', 'LEFT'],
    row: (a) => [String(a.id), a.user, addr(a.client), `${a.transport}/${a.relayProtocol}`, a.additionalRelayed ? `${addr(a.relayed)},${addr(a.additionalRelayed)}` : addr(a.relayed), String(a.permissions.length), String(a.channels), `${a.bytes.up}/${a.bytes.down}`, `${a.secondsLeft}s`],
  });
  return 0;
}

async function end(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { json: { type: 'boolean' } });
  const id = onePositional(positionals, 'ID');
  if (!/^\d{1,12}$/.test(id)) throw new UsageError(`ID must be a number, got "${id}"`);
  await clientFromEnv(values.data).request('DELETE', `/api/v1/turn/allocations/${id}`);
  process.stdout.write(`allocation ${id} ended\n`);
  return 0;
}

const SUBCOMMANDS: Record<string, (args: string[]) => Promise<number>> = { credentials, allocations, end };

export const command: Command = apiCommand('turn', 'TURN credentials and allocations of the rendezvous service (talks to the REST API)', usage, SUBCOMMANDS);
