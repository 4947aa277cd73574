// The rendezvous service's settings (YAML section `rendezvous:`): where its STUN/TURN server listens.
import { Type, type Static } from '@sinclair/typebox';
import { parseListenAddress } from '../config/common.js';
import { opt, section } from '../config/schema.js';

export const rendezvousSection = section({
  name: 'rendezvous',
  title: 'Rendezvous service (STUN/TURN)',
  schema: Type.Object({
    turn: opt.string({
      flag: 'turn',
      key: 'listen',
      arg: '[HOST:]PORT',
      help: 'STUN/TURN server on UDP and TCP (PORT alone: loopback; 3478 is the standard port). Answers STUN Binding (RFC 8489, and RFC 3489 clients); TURN allocations are not implemented yet',
      default: '',
    }),
  }),
  validate(s) {
    if (s.turn !== '') parseListenAddress(s.turn, '--turn');
  },
});

export type RendezvousSettings = Static<typeof rendezvousSection.schema>;
