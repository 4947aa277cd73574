// SASLprep (RFC 4013, the stringprep profile of RFC 3454) for STUN's long-term credentials: the
// RFC 5389/5769 key is MD5 over SASLprep'd strings, so two spellings of one password give one key.
// Differences from the letter of RFC 3454, because JavaScript has no Unicode 3.2 tables: NFKC and
// "unassigned" follow the Unicode version of the running Node, and the bidi rule's LCat (table D.2)
// is approximated as letters and spacing marks outside the right-to-left scripts.
import { err, ok, type Result } from '../core/result.js';
import type { Issue } from '../core/errors.js';

export type SaslprepIssue = Issue<'prohibited_character' | 'bad_bidi'>;

type Ranges = ReadonlyArray<readonly [number, number]>;

const inRanges = (cp: number, ranges: Ranges): boolean => {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
};

/** B.1: commonly mapped to nothing (soft hyphen, zero-width joiners, variation selectors, BOM). */
const MAP_TO_NOTHING: Ranges = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d],
  [0x2060, 0x2060], [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
];

/** C.1.2: non-ASCII spaces, mapped to U+0020 (U+200B is in B.1 too; B.1 wins, as the RFC's mapping step lists it). */
const NON_ASCII_SPACE: Ranges = [
  [0x00a0, 0x00a0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000],
];

/** C.1.2, C.2.1, C.2.2, C.3, C.5, C.6, C.7, C.8, C.9 (C.4 noncharacters are tested arithmetically). */
const PROHIBITED: Ranges = [
  ...NON_ASCII_SPACE,
  [0x0000, 0x001f], [0x007f, 0x009f], [0x0340, 0x0341], [0x06dd, 0x06dd], [0x070f, 0x070f],
  [0x180e, 0x180e], [0x200c, 0x200f], [0x2028, 0x202e], [0x2060, 0x2063], [0x206a, 0x206f],
  [0x2ff0, 0x2ffb], [0xd800, 0xdfff], [0xe000, 0xf8ff], [0xfeff, 0xfeff], [0xfff9, 0xfffd],
  [0x1d173, 0x1d17a], [0xe0001, 0xe0001], [0xe0020, 0xe007f], [0xf0000, 0xffffd], [0x100000, 0x10fffd],
];

/** D.1: characters with bidirectional property R or AL (Unicode 3.2). */
const RAND_AL: Ranges = [
  [0x05be, 0x05be], [0x05c0, 0x05c0], [0x05c3, 0x05c3], [0x05d0, 0x05ea], [0x05f0, 0x05f4],
  [0x061b, 0x061b], [0x061f, 0x061f], [0x0621, 0x063a], [0x0640, 0x064a], [0x066d, 0x066f],
  [0x0671, 0x06d5], [0x06dd, 0x06dd], [0x06e5, 0x06e6], [0x06fa, 0x06fe], [0x0700, 0x070d],
  [0x0710, 0x0710], [0x0712, 0x072c], [0x0780, 0x07a5], [0x07b1, 0x07b1], [0x200f, 0x200f],
  [0xfb1d, 0xfb1d], [0xfb1f, 0xfb28], [0xfb2a, 0xfb36], [0xfb38, 0xfb3c], [0xfb3e, 0xfb3e],
  [0xfb40, 0xfb41], [0xfb43, 0xfb44], [0xfb46, 0xfbb1], [0xfbd3, 0xfd3d], [0xfd50, 0xfd8f],
  [0xfd92, 0xfdc7], [0xfdf0, 0xfdfc], [0xfe70, 0xfe74], [0xfe76, 0xfefc],
];

const LEFT_TO_RIGHT = /[\p{L}\p{Mc}]/u;
const RIGHT_TO_LEFT_SCRIPT = /[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Samaritan}\p{Script=Mandaic}]/u;
const UNASSIGNED = /\p{Cn}/u;

const isNoncharacter = (cp: number): boolean => (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;

const hex = (cp: number): string => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;

/** RFC 4013 SASLprep for stored strings: maps, NFKC-normalizes, then refuses prohibited, unassigned or mixed-direction text. */
export function saslprep(s: string): Result<string, SaslprepIssue> {
  let mapped = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, MAP_TO_NOTHING)) continue;
    mapped += inRanges(cp, NON_ASCII_SPACE) ? ' ' : ch;
  }
  const out = mapped.normalize('NFKC');
  let hasRandAL = false;
  let hasL = false;
  for (const ch of out) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, PROHIBITED) || isNoncharacter(cp) || UNASSIGNED.test(ch)) {
      return err({ code: 'prohibited_character', field: null, message: `SASLprep prohibits ${hex(cp)} in a credential` });
    }
    if (inRanges(cp, RAND_AL)) hasRandAL = true;
    else if (LEFT_TO_RIGHT.test(ch) && !RIGHT_TO_LEFT_SCRIPT.test(ch)) hasL = true;
  }
  if (hasRandAL) {
    const first = out.codePointAt(0)!;
    const last = [...out].at(-1)!.codePointAt(0)!;
    if (hasL || !inRanges(first, RAND_AL) || !inRanges(last, RAND_AL)) {
      return err({ code: 'bad_bidi', field: null, message: 'SASLprep refuses right-to-left text mixed with left-to-right text or not starting and ending right-to-left' });
    }
  }
  return ok(out);
}
