// Configuration from one source: each service declares its section as a TypeBox object whose
// properties carry the flag name, the key inside the section, the argument name and the help line.
// From the sections come the flag parser, the YAML reader (flat keys = flag names, or sections
// `socks:`, `intercept:` ... with short keys), the `--help` text and the README's options table.
import { readFileSync } from 'node:fs';
import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox';
import { parse as parseYaml } from 'yaml';
import { EdgewardError } from '../core/errors.js';

/** A bad setting; the message names it (the flag, or the file and key). */
export class SettingsError extends EdgewardError<'invalid_setting'> {
  constructor(message: string) {
    super('invalid_setting', message);
  }
}

export type OptionKind = 'string' | 'boolean' | 'list' | 'seconds' | 'count' | 'choice';

interface OptionMeta {
  /** --flag, and the flat YAML key */
  flag: string;
  /** the key inside the section (socks: { listen: ... }) */
  key: string;
  /** the argument in --help (ADDR, SEC, ...) */
  arg?: string;
  kind: OptionKind;
  /** the values of a choice */
  choices?: readonly string[];
  /** a list whose YAML items may also be mappings: turns one into the flag's text form */
  yamlItem?: (item: Record<string, unknown>, where: string) => string;
}

const META = 'x-edgeward';

interface OptionArgs<T> {
  flag: string;
  /** key inside the section; default: the flag without the section's prefix */
  key?: string;
  arg?: string;
  help: string;
  default: T;
  yamlItem?: OptionMeta['yamlItem'];
}

function option<S extends TSchema>(schema: S, kind: OptionKind, a: OptionArgs<unknown>, choices?: readonly string[]): S {
  const meta: OptionMeta = { flag: a.flag, key: a.key ?? a.flag, arg: a.arg, kind, choices, ...(a.yamlItem ? { yamlItem: a.yamlItem } : {}) };
  return { ...schema, description: a.help, default: a.default, [META]: meta } as S;
}

/** Builders of the option schemas a section is made of. */
export const opt = {
  string: (a: OptionArgs<string>) => option(Type.String(), 'string', a),
  boolean: (a: Omit<OptionArgs<boolean>, 'default'> & { default?: boolean }) => option(Type.Boolean(), 'boolean', { ...a, default: a.default ?? false }),
  list: (a: Omit<OptionArgs<string[]>, 'default'>) => option(Type.Array(Type.String()), 'list', { ...a, default: [] }),
  seconds: (a: OptionArgs<number>) => option(Type.Number({ minimum: 0 }), 'seconds', a),
  count: (a: OptionArgs<number>) => option(Type.Integer({ minimum: 1 }), 'count', a),
  choice: <const C extends string>(choices: readonly C[], a: OptionArgs<NoInfer<C>>) =>
    option(Type.Unsafe<C>({ type: 'string', enum: [...choices] }), 'choice', a, choices),
};

/** One section of the configuration: a service's, or the gateway's own. */
export interface Section<T extends TObject = TObject> {
  /** the YAML section name (socks, intercept, gateway, transport) */
  name: string;
  /** heading in --help and the README */
  title: string;
  schema: T;
  /** checks across fields after the layers are merged; throws SettingsError naming the flag */
  validate?(s: Static<T>): void;
}

export function section<T extends TObject>(s: Section<T>): Section<T> {
  return s;
}

export interface OptionInfo extends OptionMeta {
  /** the settings field (camelCase) */
  field: string;
  section: string;
  help: string;
  default: unknown;
}

/** Every option of the sections, in order. */
export function optionsOf(sections: readonly Section[]): OptionInfo[] {
  const out: OptionInfo[] = [];
  for (const s of sections) {
    for (const [field, schema] of Object.entries(s.schema.properties)) {
      const meta = (schema as Record<string, unknown>)[META] as OptionMeta | undefined;
      if (!meta) throw new Error(`config: ${s.name}.${field} was not made with opt.*`);
      out.push({ ...meta, field, section: s.name, help: String(schema.description ?? ''), default: (schema as { default?: unknown }).default });
    }
  }
  return out;
}

/** The defaults of every option, as one settings object. */
export function defaultsOf(sections: readonly Section[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of optionsOf(sections)) out[o.field] = Array.isArray(o.default) ? [...o.default] : o.default;
  return out;
}

function describeKind(o: OptionInfo): string {
  switch (o.kind) {
    case 'count':
      return 'a positive integer';
    case 'seconds':
      return 'a number of seconds >= 0';
    default:
      return o.kind;
  }
}

/** A value from YAML (or a flag) as the option's type; throws SettingsError naming `name`. */
function coerce(name: string, o: OptionInfo, value: unknown): unknown {
  switch (o.kind) {
    case 'string':
    case 'choice':
      if (typeof value !== 'string' && typeof value !== 'number') throw new SettingsError(`${name} must be a string`);
      return String(value);
    case 'boolean':
      if (typeof value !== 'boolean') throw new SettingsError(`${name} must be true or false`);
      return value;
    case 'list': {
      if (typeof value === 'string') return [value];
      const { yamlItem } = o;
      if (Array.isArray(value) && yamlItem) {
        return value.map((v, i) => {
          if (typeof v === 'string') return v;
          if (typeof v === 'object' && v !== null && !Array.isArray(v)) return yamlItem(v as Record<string, unknown>, `${name}[${i}]`);
          throw new SettingsError(`${name}[${i}] must be a string or a mapping`);
        });
      }
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new SettingsError(`${name} must be a list of strings`);
      return value;
    }
    case 'seconds':
    case 'count': {
      const n = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || (o.kind === 'count' && (!Number.isInteger(n) || n < 1))) {
        throw new SettingsError(`${name} must be ${describeKind(o)}, got ${JSON.stringify(value)}`);
      }
      return n;
    }
  }
}

/** parseArgs options for the flags of the sections (plus --config). */
export function flagOptions(sections: readonly Section[]): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const o: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { config: { type: 'string' } };
  for (const s of optionsOf(sections)) o[s.flag] = s.kind === 'boolean' ? { type: 'boolean' } : s.kind === 'list' ? { type: 'string', multiple: true } : { type: 'string' };
  return o;
}

/** Parsed flags -> partial settings; numbers are checked here so that the message names the flag. */
export function settingsFromFlags(sections: readonly Section[], values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const o of optionsOf(sections)) {
    const v = values[o.flag];
    if (v === undefined) continue;
    if (o.kind === 'seconds' || o.kind === 'count') {
      const n = Number(v);
      if (!/^\d+(\.\d+)?$/.test(String(v)) || (o.kind === 'count' && (!Number.isInteger(n) || n < 1))) {
        throw new SettingsError(`--${o.flag} must be ${o.kind === 'count' ? 'a positive integer' : 'a number of seconds'}, got "${String(v)}"`);
      }
      out[o.field] = n;
    } else out[o.field] = v;
  }
  return out;
}

/**
 * Reads a YAML settings file: flat keys (the flag names), sections (`socks: {listen: ..., auth: ...}`),
 * or both. An unknown key or a wrong type is an error naming the file and the key.
 */
export function readConfigFileOf(sections: readonly Section[], path: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new SettingsError(`--config ${path}: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new SettingsError(`--config ${path}: expected a mapping of settings`);
  const options = optionsOf(sections);
  const out: Record<string, unknown> = {};
  const set = (o: OptionInfo, name: string, value: unknown): void => {
    if (o.field in out) throw new SettingsError(`--config ${path}: ${name} is set twice (as ${o.flag} and as ${o.section}.${o.key})`);
    out[o.field] = coerce(`${path}: ${name}`, o, value);
  };
  for (const [key, value] of Object.entries(doc)) {
    const sec = sections.find((s) => s.name === key);
    // a section is a mapping; `socks: 127.0.0.1:1080` stays the flat key of the same name
    if (sec && typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const own = options.filter((o) => o.section === sec.name);
      for (const [k, v] of Object.entries(value)) {
        const o = own.find((x) => x.key === k || x.flag === k);
        if (!o) throw new SettingsError(`--config ${path}: unknown setting "${key}.${k}" (known in ${key}: ${own.map((x) => x.key).join(', ')})`);
        set(o, `${key}.${k}`, v);
      }
      continue;
    }
    const o = options.find((x) => x.flag === key || x.field === key);
    if (!o) throw new SettingsError(`--config ${path}: unknown setting "${key}" (known: ${options.map((x) => x.flag).join(', ')}; or sections ${sections.map((s) => `${s.name}:`).join(', ')})`);
    set(o, key, value);
  }
  return out;
}

/** Checks the choices of the merged settings, then each section's own checks. */
export function validateSettings(sections: readonly Section[], s: Record<string, unknown>): void {
  for (const o of optionsOf(sections)) {
    if (o.kind === 'choice' && !o.choices!.includes(String(s[o.field]))) {
      const list = o.choices!;
      throw new SettingsError(`${o.flag} must be ${list.slice(0, -1).join(', ')} or ${list[list.length - 1]}, got "${String(s[o.field])}"`);
    }
  }
  for (const sec of sections) sec.validate?.(s as Static<TObject>);
}

function flagText(o: OptionInfo): string {
  return `--${o.flag}${o.arg ? ` ${o.arg}` : ''}`;
}

/** The options part of --help, by section. */
export function helpText(sections: readonly Section[]): string {
  const options = optionsOf(sections);
  const lines: string[] = [];
  for (const s of sections) {
    lines.push(`${s.title} (YAML section ${s.name}:)`);
    for (const o of options.filter((x) => x.section === s.name)) {
      const t = `  ${flagText(o)}`;
      const def = Array.isArray(o.default) || o.default === '' || o.default === false || o.help.includes('default') ? '' : ` (default ${String(o.default)})`;
      lines.push(t.length >= 30 ? `${t}\n${' '.repeat(30)}${o.help}${def}` : t.padEnd(30) + o.help + def);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** The README's options table (Markdown), one table per section. */
export function markdownTable(sections: readonly Section[]): string {
  const options = optionsOf(sections);
  const out: string[] = [];
  for (const s of sections) {
    out.push(`**${s.title}** (\`${s.name}:\`)`, '', '| flag | YAML key | default | what |', '|---|---|---|---|');
    // a | in a cell ends it unless escaped, in code spans too (GitHub's tables)
    const cell = (text: string): string => text.replace(/\|/g, '\\|');
    for (const o of options.filter((x) => x.section === s.name)) {
      const def = Array.isArray(o.default) ? (o.default.length ? o.default.join(', ') : '') : o.default === '' || o.default === false ? '' : String(o.default);
      out.push(`| \`${cell(flagText(o))}\` | \`${o.flag}\` or \`${s.name}.${o.key}\` | ${def ? `\`${cell(def)}\`` : ''} | ${cell(o.help)} |`);
    }
    out.push('');
  }
  return out.join('\n').trimEnd() + '\n';
}
