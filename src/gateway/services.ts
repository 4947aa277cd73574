// The services of the gateway, in start order. Adding a service: its folder, and one line here.
import { interceptService } from '../intercept/service.js';
import { rendezvousService } from '../rendezvous/service.js';
import { shieldService } from '../shield/service.js';
import type { ServiceDefinition } from '../runtime/service.js';
import { socksService } from '../socks/service.js';

export const SERVICES = [
  socksService,
  interceptService,
  rendezvousService,
  shieldService,
] as const;

type SettingsOf<D> = D extends ServiceDefinition<infer S> ? S : never;
type Intersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;

/** The settings every service reads, together (each service's type lists the fields it uses). */
export type ServiceSettings = Intersection<SettingsOf<(typeof SERVICES)[number]>>;
