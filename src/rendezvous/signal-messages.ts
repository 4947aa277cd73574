// The signaling protocol's messages (JSON over the WebSocket at /api/v1/rendezvous/signal): one
// schema per message a peer may send, checked before anything acts on it. The parser never throws:
// it returns the message or the issue, which the hub answers with an error frame.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

const closed = { additionalProperties: false } as const;
const SessionId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });
/** an SDP offer or answer; WebRTC's are a few KiB */
const Sdp = Type.String({ minLength: 1, maxLength: 32 * 1024 });

export const Hello = Type.Union([
  Type.Object({ type: Type.Literal('hello'), role: Type.Literal('device'), token: Type.String({ minLength: 1, maxLength: 200 }) }, closed),
  Type.Object({ type: Type.Literal('hello'), role: Type.Literal('client'), session: Type.String({ minLength: 1, maxLength: 200 }) }, closed),
]);
export const ListDevices = Type.Object({ type: Type.Literal('devices') }, closed);
export const Open = Type.Object(
  { type: Type.Literal('open'), device: Type.String({ minLength: 1, maxLength: 64 }), ref: Type.Optional(Type.String({ maxLength: 64 })) },
  closed,
);
export const Description = Type.Object({ type: Type.Union([Type.Literal('offer'), Type.Literal('answer')]), session: SessionId, sdp: Sdp }, closed);
export const Candidate = Type.Object(
  {
    type: Type.Literal('candidate'),
    session: SessionId,
    // null: the end of the sender's candidates
    candidate: Type.Union([
      Type.Object(
        {
          candidate: Type.String({ maxLength: 1024 }),
          sdpMid: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
          sdpMLineIndex: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 255 }), Type.Null()])),
          usernameFragment: Type.Optional(Type.Union([Type.String({ maxLength: 256 }), Type.Null()])),
        },
        closed,
      ),
      Type.Null(),
    ]),
  },
  closed,
);
export const Close = Type.Object({ type: Type.Literal('close'), session: SessionId, reason: Type.Optional(Type.String({ maxLength: 200 })) }, closed);

/** One end of the candidate pair ICE chose, as a peer reports it. */
const PathEnd = Type.Object(
  {
    type: Type.Union([Type.Literal('host'), Type.Literal('srflx'), Type.Literal('prflx'), Type.Literal('relay')]),
    address: Type.String({ maxLength: 255 }),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    protocol: Type.Union([Type.Literal('udp'), Type.Literal('tcp')]),
  },
  closed,
);
/** The pair ICE chose for a session (direct or relayed), for the operators' view; not forwarded. */
export const PathReport = Type.Object({ type: Type.Literal('path'), session: SessionId, relayed: Type.Boolean(), local: PathEnd, remote: PathEnd }, closed);

export type HelloMessage = Static<typeof Hello>;
export type PathMessage = Static<typeof PathReport>;
export type OpenMessage = Static<typeof Open>;
export type DescriptionMessage = Static<typeof Description>;
export type CandidateMessage = Static<typeof Candidate>;
export type CloseMessage = Static<typeof Close>;
export type InboundMessage = HelloMessage | Static<typeof ListDevices> | OpenMessage | DescriptionMessage | CandidateMessage | CloseMessage | PathMessage;

const BY_TYPE: Record<string, TSchema> = { hello: Hello, devices: ListDevices, open: Open, offer: Description, answer: Description, candidate: Candidate, close: Close, path: PathReport };
const CHECKS = Object.fromEntries(Object.entries(BY_TYPE).map(([t, s]) => [t, TypeCompiler.Compile(s)]));

/** Why a frame was refused: its code for the error frame, and a message naming what is wrong. */
export interface MessageIssue {
  code: 'bad_message' | 'unknown_type';
  message: string;
}

/** Parses one text frame into a message the hub may act on. */
export function parseSignalMessage(text: string): { ok: true; value: InboundMessage } | { ok: false; issue: MessageIssue } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { ok: false, issue: { code: 'bad_message', message: `not JSON: ${(e as Error).message}` } };
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, issue: { code: 'bad_message', message: 'a message is a JSON object with a "type"' } };
  const type = (data as { type?: unknown }).type;
  if (typeof type !== 'string') return { ok: false, issue: { code: 'bad_message', message: 'a message is a JSON object with a "type"' } };
  const check = Object.hasOwn(CHECKS, type) ? CHECKS[type] : undefined;
  if (!check) return { ok: false, issue: { code: 'unknown_type', message: `unknown message type "${type.slice(0, 40)}" (known: ${Object.keys(BY_TYPE).join(', ')})` } };
  const first = check.Errors(data).First();
  if (first) return { ok: false, issue: { code: 'bad_message', message: `${type}: ${first.path || '/'} ${first.message}` } };
  return { ok: true, value: data as InboundMessage };
}
