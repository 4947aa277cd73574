// `edgeward policy` and `edgeward user`: the real binary (bin/edgeward.js -> dist/) against a real
// API served from this process on loopback. dist/ must be built (npm test builds it first).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { createApi } from '../../src/api/server.js';
import { setupApiToken } from '../../src/auth/api-token.js';
import { DeviceService } from '../../src/auth/devices.js';
import { UserService } from '../../src/auth/users.js';
import { silentLogger } from '../../src/log/logger.js';
import { reapplyPolicies } from '../../src/transport/live.js';
import { PolicyService } from '../../src/policy/service.js';
import { ConnectionRegistry } from '../../src/relay/registry.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { assertBuilt } from '../helpers/requirements.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'edgeward.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function spawnNode(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

let dataDir: string;
let workDir: string;
let store: SqliteStore;
let policies: PolicyService;
let users: UserService;
let app: FastifyInstance;
let apiUrl: string;
let token: string;

/** Runs `edgeward ARGS` with the API's URL and token in the environment (unless overridden). */
function edgeward(args: string[], opts: { env?: Record<string, string | undefined>; input?: string } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, EDGEWARD_API_URL: apiUrl, EDGEWARD_API_TOKEN: token };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return spawnNode([BIN, ...args], { env, input: opts.input, cwd: workDir });
}

function file(name: string, text: string): string {
  const p = join(workDir, name);
  writeFileSync(p, text);
  return p;
}

async function clearPolicies(): Promise<void> {
  for (const p of policies.list()) await policies.remove(p.id);
}

before(
  async () => {
    assertBuilt();
    dataDir = mkdtempSync(join(tmpdir(), 'edgeward-cli-data-'));
    workDir = mkdtempSync(join(tmpdir(), 'edgeward-cli-work-'));
    store = new SqliteStore(dataDir);
    policies = await PolicyService.open(store);
    users = new UserService(store);
    const registry = new ConnectionRegistry();
    // no EDGEWARD_API_TOKEN: the token is generated into DATA/api-token, as `edgeward start` does
    const setup = await setupApiToken(store, dataDir, undefined);
    assert.ok(setup.file);
    token = readFileSync(setup.file, 'utf8').trim();
    app = await createApi({ policies, users, devices: new DeviceService(store), registry, verifyToken: setup.verify, reapply: () => reapplyPolicies(registry.list(), (d) => policies.decide(d)), logger: silentLogger, version: '0.0.0-test' });
    await app.listen({ host: '127.0.0.1', port: 0 });
    apiUrl = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
  },
  { timeout: 60_000 },
);

after(async () => {
  await app?.close();
  await store?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('edgeward policy', () => {
  before(clearPolicies);

  it('adds a policy from flags and lists it as a table and as JSON', async () => {
    const add = await edgeward(['policy', 'add', '--host', 'example.com', '--port', '443', '--mptcp', '--congestion', 'reno', '--no-delay', '--keepalive', '60,10,5', '--comment', 'web']);
    assert.equal(add.code, 0, add.stderr);
    const stored = policies.list();
    assert.equal(stored.length, 1);
    const p = stored[0]!;
    assert.deepEqual(p.match, { host: 'example.com', port: 443 });
    assert.deepEqual(p.transport, { mptcp: true, congestion: 'reno', noDelay: true, keepAlive: { idle: 60, interval: 10, count: 5 } });
    assert.equal(p.comment, 'web');
    assert.match(add.stdout, new RegExp(`^added policy ${p.id}: example.com port 443 mptcp congestion=reno nodelay keepalive=60,10,5\\n`));
    assert.match(add.stdout, /note: .*new connections only/);

    const list = await edgeward(['policy', 'list']);
    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^ID\s+MATCH\s+PORT\s+TRANSPORT\s+VIA\s+COMMENT$/);
    assert.match(lines[1]!, new RegExp(`^${p.id}\\s+example\\.com\\s+443\\s+mptcp congestion=reno nodelay keepalive=60,10,5\\s+-\\s+web$`));
    assert.equal(lines[lines.length - 1], 'default: (default)');

    const json = await edgeward(['policy', 'list', '--json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), policies.list());
  });

  it('adds a policy that chains through an upstream, and lists it without the password', async () => {
    const add = await edgeward(['policy', 'add', '--cidr', '198.51.100.0/24', '--mptcp', '--via', 'socks5://ops:s3cret@192.0.2.9:1080']);
    assert.equal(add.code, 0, add.stderr);
    const p = policies.list().find((x) => x.match.cidr === '198.51.100.0/24');
    assert.equal(p?.via, 'socks5://ops:s3cret@192.0.2.9:1080');
    const list = await edgeward(['policy', 'list']);
    assert.match(list.stdout, /198\.51\.100\.0\/24\s+\*\s+mptcp\s+socks5:\/\/ops:\*\*\*@192\.0\.2\.9:1080/);
    assert.ok(!list.stdout.includes('s3cret'), list.stdout);
    const bad = await edgeward(['policy', 'add', '--cidr', '203.0.113.0/24', '--via', 'http://proxy:3128']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /via: scheme "http" is not supported/);
    await policies.remove(p!.id);
  });

  it('prints the API error and exits 1 when the kernel lacks what was asked', async () => {
    const r = await edgeward(['policy', 'add', '--cidr', '10.0.0.0/8', '--congestion', 'foo']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /transport\.congestion "foo" is not available on this kernel; available: .*reno/);
    assert.equal(policies.list().length, 1);
  });

  it('exits 2 with a usage message for a bad command line', async () => {
    const both = await edgeward(['policy', 'add', '--host', 'a.example', '--cidr', '10.0.0.0/8']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /exactly one of --host or --cidr/);
    const unknown = await edgeward(['policy', 'add', '--host', 'a.example', '--fast']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /--fast/);
    const conflict = await edgeward(['policy', 'add', '--host', 'a.example', '--mptcp', '--no-mptcp']);
    assert.equal(conflict.code, 2);
    assert.match(conflict.stderr, /--mptcp and --no-mptcp exclude each other/);
    const ka = await edgeward(['policy', 'add', '--host', 'a.example', '--keepalive', '60']);
    assert.equal(ka.code, 2);
    assert.match(ka.stderr, /IDLE,INTERVAL,COUNT/);
    assert.equal((await edgeward(['policy'])).code, 2);
    assert.equal((await edgeward(['policy', 'frobnicate'])).code, 2);
    assert.equal(policies.list().length, 1, 'nothing was added');
  });

  it('documents its flags and environment in --help', async () => {
    const r = await edgeward(['policy', '--help']);
    assert.equal(r.code, 0);
    for (const flag of ['--host', '--cidr', '--port', '--mptcp', '--no-mptcp', '--congestion', '--no-delay', '--nagle', '--keepalive', '--no-keepalive', '--scheduler', '--path-manager', '--comment', 'EDGEWARD_API_URL', 'EDGEWARD_API_TOKEN']) {
      assert.ok(r.stdout.includes(flag), `--help mentions ${flag}`);
    }
  });

  it('removes a policy by id, and says when there is none', async () => {
    const id = policies.list()[0]!.id;
    const rm = await edgeward(['policy', 'rm', String(id)]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(rm.stdout, `removed policy ${id}\n`);
    assert.equal(policies.list().length, 0);
    const again = await edgeward(['policy', 'rm', String(id)]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`no policy with id ${id}`));
    assert.equal((await edgeward(['policy', 'rm', 'abc'])).code, 2);
  });

  it('shows and changes the default transport, keeping the fields not given', async () => {
    const set = await edgeward(['policy', 'default', '--mptcp', '--congestion', 'reno']);
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual(policies.getDefault(), { mptcp: true, congestion: 'reno' });
    const more = await edgeward(['policy', 'default', '--no-delay']);
    assert.equal(more.code, 0, more.stderr);
    assert.deepEqual(policies.getDefault(), { mptcp: true, congestion: 'reno', noDelay: true });
    const show = await edgeward(['policy', 'default']);
    assert.equal(show.stdout, 'default: mptcp congestion=reno nodelay\n');
    const reset = await edgeward(['policy', 'default', '--reset']);
    assert.equal(reset.code, 0, reset.stderr);
    assert.deepEqual(policies.getDefault(), {});
  });
});

describe('edgeward policy import', () => {
  before(clearPolicies);

  it('imports a good legacy file: every entry added, translated', async () => {
    const f = file('good.txt', '192.0.2.1,1,default,fullmesh,\r\n\r\nexample.org,0,,,\r\n198.51.100.0/24,1,default,kernel\r\n.\r\n');
    const r = await edgeward(['policy', 'import', f]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^imported 3 policies from /);
    assert.match(r.stdout, /note \(line 1\): .*fullmesh/);
    const byMatch = new Map(policies.list().map((p) => [p.match.host ?? p.match.cidr, p.transport]));
    assert.deepEqual(Object.fromEntries(byMatch), {
      '192.0.2.1': { mptcp: true, scheduler: 'default', pathManager: 'kernel' },
      'example.org': { mptcp: false },
      '198.51.100.0/24': { mptcp: true, scheduler: 'default', pathManager: 'kernel' },
    });
  });

  it('reports every bad line as FILE:LINE and imports nothing', async () => {
    const before = policies.list().length;
    const f = file('bad.txt', ['192.0.2.20,1,default,default,', '192.0.2.21,maybe,default,default,', '192.0.2.22,1,default,kernel,', 'not a host,1,default,default,', '.', ''].join('\n'));
    const r = await edgeward(['policy', 'import', f]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^${f}:2: enable must be 0 or 1, not "maybe"$`, 'm'));
    assert.match(r.stderr, new RegExp(`^${f}:4: ip "not a host"`, 'm'));
    assert.equal(r.stderr.split('\n').filter((l) => /^.*:\d+: /.test(l)).length, 2, r.stderr);
    assert.match(r.stderr, /nothing imported/);
    assert.equal(policies.list().length, before, 'nothing was added');
  });

  it('reports an entry the server refuses with its line number, and imports nothing', async () => {
    const before = policies.list().length;
    const f = file('sched.txt', '192.0.2.30,1,default,kernel,\n192.0.2.31,1,default,kernel,\n192.0.2.32,1,roundrobin,kernel,\n.\n');
    const r = await edgeward(['policy', 'import', f]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^${f}:3: transport\\.scheduler "roundrobin" is not available on this kernel`, 'm'));
    assert.equal(policies.list().length, before);

    const dup = file('dup.txt', '192.0.2.40,1,,,\n192.0.2.1,0,,,\n.\n'); // line 2 exists already
    const d = await edgeward(['policy', 'import', dup]);
    assert.equal(d.code, 1);
    assert.match(d.stderr, new RegExp(`^${dup}:2: policy \\d+ already has the same match$`, 'm'));
    assert.equal(d.stderr.split('\n').filter((l) => /^.*:\d+: /.test(l)).length, 1, d.stderr);
    assert.equal(policies.list().length, before);
  });

  it('says a file without the closing "." looks truncated', async () => {
    const f = file('cut.txt', '192.0.2.50,1,default,default,\n192.0.2.51,1,default,def');
    const r = await edgeward(['policy', 'import', f]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^${f}:2: no closing "\\." line: the file looks truncated$`, 'm'));
  });

  it('says when the file cannot be read', async () => {
    const r = await edgeward(['policy', 'import', join(workDir, 'missing.txt')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot read .*missing\.txt: ENOENT/);
  });
});

describe('edgeward user', () => {
  it('adds a user with --password-stdin; the password works, list shows no hash', async () => {
    const add = await edgeward(['user', 'add', 'bob', '--password-stdin'], { input: 's3cret pass\n' });
    assert.equal(add.code, 0, add.stderr);
    assert.equal(add.stdout, 'added user bob (socks)\n');
    assert.equal(await users.verify('bob', 's3cret pass'), true, 'the first line of stdin is the password');
    assert.equal(await users.verify('bob', 's3cret pass\n'), false);

    const list = await edgeward(['user', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^USERNAME\s+TURN REALM\s+SOCKS\s+RENDEZVOUS\s+CONSOLE\s+CREATED\nbob\s+-\s+yes\s+no\s+no\s+\d{4}-\d\d-\d\dT/);
    assert.ok(!/scrypt|hash|s3cret/.test(list.stdout));
    const json = await edgeward(['user', 'list', '--json']);
    const parsed = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(
      parsed.map((u) => Object.keys(u).sort()),
      [['console', 'createdAt', 'rendezvous', 'socks', 'turnRealm', 'username']],
    );
  });

  it('prints the API refusal of a duplicate or bad name', async () => {
    const dup = await edgeward(['user', 'add', 'bob', '--password-stdin'], { input: 'x\n' });
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /bob/);
    const bad = await edgeward(['user', 'add', 'bad name', '--password-stdin'], { input: 'x\n' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /username must be/);
    const empty = await edgeward(['user', 'add', 'carol', '--password-stdin'], { input: '\n' });
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /empty/);
  });

  it('refuses to read a password from a non-terminal without --password-stdin', async () => {
    const r = await edgeward(['user', 'add', 'dave'], { input: 'pw\n' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--password-stdin/);
    assert.deepEqual(
      (await users.list()).map((u) => u.username),
      ['bob'],
    );
  });

  it('removes a user', async () => {
    const rm = await edgeward(['user', 'rm', 'bob']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual(await users.list(), []);
    const again = await edgeward(['user', 'rm', 'bob']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no user "bob"/);
  });
});

describe('edgeward device', () => {
  it('adds a rendezvous-only user and a device of theirs; the token is printed once and opens nothing else', async () => {
    const add = await edgeward(['user', 'add', 'erin', '--rendezvous', '--no-socks', '--password-stdin'], { input: 'erin pass\n' });
    assert.equal(add.code, 0, add.stderr);
    assert.equal(add.stdout, 'added user erin (rendezvous)\n');
    assert.equal(await users.verify('erin', 'erin pass', 'rendezvous'), true);
    assert.equal(await users.verify('erin', 'erin pass', 'socks'), false, '--no-socks: the proxy refuses her');

    const dev = await edgeward(['device', 'add', 'erin', 'simbox']);
    assert.equal(dev.code, 0, dev.stderr);
    const m = /^added device simbox of erin \(id (\d+)\)\ntoken: (ewd_[A-Za-z0-9_-]{43})\n$/.exec(dev.stdout);
    assert.ok(m, dev.stdout);
    assert.match(dev.stderr, /shown this once/);
    const devices = new DeviceService(store);
    assert.equal((await devices.byToken(m[2]!))?.name, 'simbox', 'the printed token is the device\'s');
    assert.equal(await devices.byToken(`${m[2]!.slice(0, -1)}x`), null);

    const list = await edgeward(['device', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^\\s+ID\\s+USER\\s+NAME\\s+CREATED\\n\\s+${m[1]}\\s+erin\\s+simbox\\s+\\d{4}-`));
    assert.ok(!list.stdout.includes(m[2]!), 'the token is not shown again');
    const json = JSON.parse((await edgeward(['device', 'list', '--user', 'erin', '--json'])).stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(json.map((d) => [d.id, d.user, d.name]), [[Number(m[1]), 'erin', 'simbox']]);
    assert.deepEqual(JSON.parse((await edgeward(['device', 'list', '--user', 'nobody', '--json'])).stdout), []);
  });

  it('refuses a duplicate name, an unknown user and a bad name, naming what is wrong; removes by id', async () => {
    const dup = await edgeward(['device', 'add', 'erin', 'simbox']);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /already has a device "simbox"/);
    const nobody = await edgeward(['device', 'add', 'nobody', 'box']);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /no user "nobody"/);
    const bad = await edgeward(['device', 'add', 'erin', 'bad name']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /device name must be/);
    const usage = await edgeward(['device', 'rm', 'simbox']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /ID must be a device id/);
    const id = (JSON.parse((await edgeward(['device', 'list', '--json'])).stdout) as Array<{ id: number }>)[0]!.id;
    const rm = await edgeward(['device', 'rm', String(id)]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await edgeward(['device', 'list'])).stdout, 'no devices\n');
    const again = await edgeward(['device', 'rm', String(id)]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`no device with id ${id}`));
  });

  it('a removed user takes their devices along', async () => {
    assert.equal((await edgeward(['device', 'add', 'erin', 'box2'])).code, 0);
    assert.equal((await edgeward(['user', 'rm', 'erin'])).code, 0);
    assert.equal((await edgeward(['device', 'list'])).stdout, 'no devices\n');
  });
});

describe('API connection errors', () => {
  it('says the API cannot be reached and asks whether edgeward start runs', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const url = `http://127.0.0.1:${port}`;
    const r = await edgeward(['policy', 'list'], { env: { EDGEWARD_API_URL: url } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`cannot reach the edgeward API at ${url} \\(ECONNREFUSED\\): is "edgeward start" running\\?`));
  });

  it('says to set EDGEWARD_API_TOKEN when the token is refused', async () => {
    const r = await edgeward(['user', 'list'], { env: { EDGEWARD_API_TOKEN: 'wrong' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /set EDGEWARD_API_TOKEN/);
  });

  it('reads the token from DATA/api-token when EDGEWARD_API_TOKEN is unset, and says when there is none', async () => {
    const ok = await edgeward(['policy', 'list', '--json', '--data', dataDir], { env: { EDGEWARD_API_TOKEN: undefined } });
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout), policies.list());

    const none = await edgeward(['policy', 'list'], { env: { EDGEWARD_API_TOKEN: undefined } }); // ./.edgeward in an empty dir
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no API token: set EDGEWARD_API_TOKEN/);
  });
});
