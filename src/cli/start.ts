// `edgeward start`: run the gateway until SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { flagOptions, helpText, settingsFromFlags } from '../config/schema.js';
import { openProxyRefusal, readConfigFile, resolveSettings, SECTIONS, SettingsError, type Settings } from '../gateway/settings.js';
import { startGateway, type Gateway } from '../gateway/gateway.js';
import { createLogger } from '../log/logger.js';
import type { Command } from './command.js';
import { version } from './command.js';

const usage = `Usage: edgeward start [options]

Runs the gateway: a SOCKS5/SOCKS4 proxy that gives every outgoing connection the transport policy
of its destination (MPTCP, congestion control, Nagle, keepalive), and the REST API that manages
policies and users (bearer token: env EDGEWARD_API_TOKEN, or generated into DATA/api-token), with
the browser console at /console on the same address (sign in with that token, or as a user with
console access).

Options (flags; in a --config YAML file the same names as keys, or sections with short keys):
  --config FILE               YAML file with any of the settings below

${helpText(SECTIONS)}
Kernel: MPTCP policies need an upstream MPTCP kernel (5.6+, net.mptcp.enabled=1); without it they
fall back to TCP and the connection record says so. Congestion controls are those listed in
/proc/sys/net/ipv4/tcp_available_congestion_control. A policy's scheduler / pathManager is set
through net.mptcp.scheduler / net.mptcp.path_manager around socket creation, which needs root
(CAP_NET_ADMIN); otherwise the connection record lists it as not applied.

Signals: SIGTERM or SIGINT stops accepting, lets open connections drain for --shutdown-grace
seconds, then exits 0. A second signal exits at once.
`;

/**
 * V8 decides per allocation site whether its objects go straight into the old generation
 * (pretenuring), from how many of them survived scavenges. A proxied connection's objects live for
 * milliseconds, but V8 had tenured some of their sites (the accepted client's above all), so those
 * objects went to the old generation for every connection and left only with a mark-compact.
 * Without pretenuring, at 32 in flight: no mark-compact in 9 s against 5, scavenges 0.7 ms
 * against 1.5, bytes surviving scavenges 0.85 MB in 4 s against 14.3 (bench/README.md).
 * Process-wide, so set before the worker threads start and before any connection.
 */
function tuneCollector(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}

async function run(args: string[]): Promise<number> {
  tuneCollector();
  let settings: Settings;
  try {
    const { values, positionals } = parseArgs({ args, options: flagOptions(SECTIONS), allowPositionals: true, strict: true });
    if (positionals.length > 0) throw new SettingsError(`unexpected argument "${positionals[0]}"`);
    const file = typeof values.config === 'string' ? readConfigFile(values.config) : {};
    settings = resolveSettings(file, settingsFromFlags(SECTIONS, values) as Partial<Settings>);
  } catch (e) {
    process.stderr.write(`edgeward start: ${(e as Error).message}\n(see edgeward start --help)\n`);
    return 2;
  }
  const refusal = openProxyRefusal(settings);
  if (refusal) {
    process.stderr.write(`edgeward start: ${refusal}\n`);
    return 2;
  }
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat });
  // The handlers go in before the gateway starts: it logs "listening" (the readiness a supervisor or
  // a script waits for) from inside startGateway, and a SIGTERM sent right after that line must stop
  // it in order, not kill it. A signal during start-up stops the gateway as soon as it is up.
  let gateway: Gateway | null = null;
  let signals = 0;
  let exitWith: (code: number) => void = () => undefined;
  const exited = new Promise<number>((resolve) => (exitWith = resolve));
  const stop = (g: Gateway): void => {
    g.stop(settings.shutdownGrace * 1000).then(
      () => exitWith(0),
      (e: unknown) => {
        logger.error('error while stopping', { error: String(e) });
        exitWith(1);
      },
    );
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      logger.warn('second signal: exiting now', { signal: sig });
      process.exit(1);
    }
    logger.info('signal received', { signal: sig });
    if (gateway) stop(gateway);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    gateway = await startGateway(settings, logger, version());
  } catch (e) {
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    logger.error('cannot start', { error: (e as Error).message });
    return 1;
  }
  if (signals > 0) stop(gateway);
  return exited;
}

export const command: Command = { summary: 'run the gateway (SOCKS proxy + REST API)', usage, run };
