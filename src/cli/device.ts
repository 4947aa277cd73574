// `edgeward device ...`: a user's devices for rendezvous, through the REST API. `add` prints the
// device's token once: only its hash is stored, so it cannot be shown again (remove the device and
// add it anew to get another).
import { clientFromEnv, ENV_HELP } from './api-client.js';
import { apiCommand, onePositional, parseOptions, printList, UsageError } from './api-command.js';
import type { Command } from './command.js';

const usage = `Usage: edgeward device <add|rm|list> [options]

Devices of the rendezvous service (edgeward start --turn ...): the always-on boxes a user reaches
through "edgeward peer connect". Each has a name, unique for its user, and a token that
"edgeward peer device" presents; the token is printed once, at add, and only its SHA-256 is kept.

  edgeward device add USER NAME [--json]
  edgeward device rm ID
  edgeward device list [--user USER] [--json]

Options:
  --user USER        only this user's devices
  --json             print JSON instead of text
  --data DIR         data directory of edgeward start, for DATA/api-token (default ./.edgeward)

${ENV_HELP}
Exit status: 0 ok, 1 failure (the API said no, or cannot be reached), 2 usage error.
`;

interface DeviceView {
  id: number;
  user: string;
  name: string;
  createdAt: string;
}

async function add(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { json: { type: 'boolean' } });
  if (positionals.length < 2) throw new UsageError(positionals.length === 0 ? 'missing USER and NAME' : 'missing NAME');
  if (positionals.length > 2) throw new UsageError(`unexpected argument "${positionals[2]}"`);
  const [user, name] = positionals as [string, string];
  const api = clientFromEnv(values.data);
  const r = await api.request<{ device: DeviceView; token: string }>('POST', '/api/v1/devices', { user, name });
  if (values.json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`added device ${r.device.name} of ${r.device.user} (id ${r.device.id})\ntoken: ${r.token}\n`);
  process.stderr.write('the token is shown this once: give it to "edgeward peer device --token" on the device\n');
  return 0;
}

async function rm(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, {});
  const id = onePositional(positionals, 'ID');
  if (!/^[0-9]{1,12}$/.test(id)) throw new UsageError(`ID must be a device id (a number, see edgeward device list), got "${id}"`);
  const api = clientFromEnv(values.data);
  await api.request('DELETE', `/api/v1/devices/${id}`);
  process.stdout.write(`removed device ${id}\n`);
  return 0;
}

async function list(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { json: { type: 'boolean' }, user: { type: 'string' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const api = clientFromEnv(values.data);
  const { devices } = await api.request<{ devices: DeviceView[] }>('GET', `/api/v1/devices${values.user !== undefined ? `?user=${encodeURIComponent(values.user)}` : ''}`);
  printList(devices, { json: values.json === true, empty: 'no devices', head: ['  ID', 'USER', 'NAME', 'CREATED'], row: (d) => [String(d.id), d.user, d.name, d.createdAt], right: [0] });
  return 0;
}

const SUBCOMMANDS: Record<string, (args: string[]) => Promise<number>> = { add, rm, remove: rm, list, ls: list };

export const command: Command = apiCommand('device', 'add, remove and list the devices users reach through rendezvous (talks to the REST API)', usage, SUBCOMMANDS);
