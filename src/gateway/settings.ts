// The settings of `edgeward start`: the gateway's own sections and each service's, merged from the
// embedded defaults, a YAML file (--config) and the flags. Generated from the sections' schemas:
// flags, YAML keys (flat or sectioned), --help and the README's options table.
import type { Static } from '@sinclair/typebox';
import { gatewaySection, transportSection } from '../config/common.js';
import { defaultsOf, readConfigFileOf, validateSettings, type Section } from '../config/schema.js';
import type { ServiceDefinition } from '../runtime/service.js';
import { SERVICES, type ServiceSettings } from './services.js';

export { parseListenAddress, parseKeepAlive } from '../config/common.js';
export { SettingsError } from '../config/schema.js';
export { openProxyRefusal } from '../socks/config.js';
export { parseInterceptAddress } from '../intercept/config.js';

export type Settings = Static<typeof gatewaySection.schema> & Static<typeof transportSection.schema> & ServiceSettings;

/** The services as the gateway drives them: each reads its own fields of the whole settings. */
export const DEFINITIONS: ReadonlyArray<ServiceDefinition<Settings>> = SERVICES;

/** Every section: the gateway's, the shared connection settings, then one per service. */
export const SECTIONS: readonly Section[] = [gatewaySection, transportSection, ...DEFINITIONS.map((s) => s.section)];

export const DEFAULTS = defaultsOf(SECTIONS) as Settings;

/** Reads a YAML settings file; unknown keys and wrong types are errors naming the key. */
export function readConfigFile(path: string): Partial<Settings> {
  return readConfigFileOf(SECTIONS, path) as Partial<Settings>;
}

/** Merges the layers and checks the result; throws SettingsError. */
export function resolveSettings(file: Partial<Settings>, flags: Partial<Settings>): Settings {
  const s: Settings = { ...DEFAULTS, ...file, ...flags };
  validateSettings(SECTIONS, s as unknown as Record<string, unknown>);
  return s;
}
