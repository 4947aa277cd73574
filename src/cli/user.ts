// `edgeward user ...`: the users (SOCKS RFC 1929 username/password, and TURN), through the REST API.
// Passwords come from stdin (--password-stdin) or a prompt without echo, never from the command line.
import { clientFromEnv, ENV_HELP } from './api-client.js';
import { apiCommand, onePositional, parseOptions, printList, UsageError } from './api-command.js';
import type { Command } from './command.js';
import { promptHidden, readPasswordFromStdin } from './password.js';

const usage = `Usage: edgeward user <add|rm|list> [options]

Users, for "edgeward start --socks-auth" (RFC 1929 username/password; stored scrypt-hashed),
with --turn for the TURN server of "edgeward start --turn" (long-term credentials: the key
MD5(NAME:REALM:PASSWORD) is stored for the server's --turn-realm, never the password; a user
made before the realm changes must be made again), with --rendezvous for logins to the
rendezvous service (their devices, peer sessions), and with --console for the console
(/console on the API's address, with every right the API token has).

  edgeward user add NAME [--turn] [--rendezvous] [--console] [--no-socks] [--password-stdin]
      the password is asked twice on the terminal (not echoed), or read from the first line of
      standard input with --password-stdin (e.g. printf '%s\\n' "$PW" | edgeward user add alice --password-stdin)
  edgeward user rm NAME
  edgeward user list [--json]

Options:
  --turn             the user may use the TURN server too
  --rendezvous       the user may log in to the rendezvous service (see edgeward device)
  --console          the user may sign in to the console (an operator: every right of the API token)
  --no-socks         the user may not use the SOCKS proxy (default: may)
  --password-stdin   read the password from standard input
  --json             print JSON instead of a table
  --data DIR         data directory of edgeward start, for DATA/api-token (default ./.edgeward)

${ENV_HELP}
Exit status: 0 ok, 1 failure (the API said no, or cannot be reached), 2 usage error.
`;

interface UserView {
  username: string;
  createdAt: string;
  turnRealm: string | null;
  socks: boolean;
  rendezvous: boolean;
  console: boolean;
}

/** What the user may use: "socks, turn (realm R), rendezvous", or "nothing". */
function access(u: UserView): string {
  const what = [u.socks ? 'socks' : '', u.turnRealm !== null ? `turn (realm ${u.turnRealm})` : '', u.rendezvous ? 'rendezvous' : '', u.console ? 'console' : ''].filter(Boolean);
  return what.length > 0 ? what.join(', ') : 'nothing';
}

async function add(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { 'password-stdin': { type: 'boolean' }, turn: { type: 'boolean' }, rendezvous: { type: 'boolean' }, console: { type: 'boolean' }, 'no-socks': { type: 'boolean' } });
  const name = onePositional(positionals, 'NAME');
  let password: string;
  if (values['password-stdin']) {
    password = await readPasswordFromStdin();
  } else {
    if (!process.stdin.isTTY) throw new UsageError('standard input is not a terminal: pass the password with --password-stdin');
    password = await promptHidden(`password for ${name}: `);
    const again = await promptHidden('again: ');
    if (password !== again) {
      process.stderr.write('edgeward user add: the passwords differ; nothing changed\n');
      return 1;
    }
  }
  if (password === '') {
    process.stderr.write('edgeward user add: the password is empty; nothing changed\n');
    return 1;
  }
  const api = clientFromEnv(values.data);
  const u = await api.request<UserView>('POST', '/api/v1/users', { username: name, password, turn: values.turn === true, rendezvous: values.rendezvous === true, console: values.console === true, socks: values['no-socks'] !== true });
  process.stdout.write(`added user ${u.username} (${access(u)})\n`);
  return 0;
}

async function rm(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, {});
  const name = onePositional(positionals, 'NAME');
  const api = clientFromEnv(values.data);
  await api.request('DELETE', `/api/v1/users/${encodeURIComponent(name)}`);
  process.stdout.write(`removed user ${name}\n`);
  return 0;
}

async function list(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { json: { type: 'boolean' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const api = clientFromEnv(values.data);
  const { users } = await api.request<{ users: UserView[] }>('GET', '/api/v1/users');
  const yes = (b: boolean): string => (b ? 'yes' : 'no');
  printList(users, { json: values.json === true, empty: 'no users', head: ['USERNAME', 'TURN REALM', 'SOCKS', 'RENDEZVOUS', 'CONSOLE', 'CREATED'], row: (u) => [u.username, u.turnRealm ?? '-', yes(u.socks), yes(u.rendezvous), yes(u.console), u.createdAt] });
  return 0;
}

const SUBCOMMANDS: Record<string, (args: string[]) => Promise<number>> = { add, rm, remove: rm, list, ls: list };

export const command: Command = apiCommand('user', 'add, remove and list users of SOCKS and TURN (talks to the REST API)', usage, SUBCOMMANDS);
