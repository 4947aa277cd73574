// Summaries of the rounds (median, spread) and the side-by-side table.
import type { TargetName } from './targets.js';

/** Median of the values; undefined when there are none. */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1]! + s[mid]!) / 2;
}

/** (max - min) / median, as a fraction: how noisy the rounds were. */
export function spread(values: readonly number[]): number | undefined {
  const m = median(values);
  if (m === undefined || m === 0 || values.length < 2) return undefined;
  return (Math.max(...values) - Math.min(...values)) / m;
}

/** edgeward/the better peer (microsocks or Dante): at least `min` (a second bar: `stretch`), or at most `max` where less is better */
export type Goal = { min: number; stretch?: number } | { max: number };

export interface Row<C extends string = TargetName> {
  metric: string;
  /** what each column shows: a number already formatted, or why there is none */
  cells: Record<C, string>;
  /** edgeward/the better peer (edgeward/coturn in the TURN table) when both have a value */
  ratio?: number;
  goal?: Goal;
  /** the target column's text when the goal is not a ratio (e.g. "< 2.0 s") */
  goalLabel?: string;
  result: string;
}

/** PASS / MISS (with the stretch bar when there is one), or n/a when the ratio is unknown. */
export function judge(ratio: number | undefined, goal: Goal | undefined): string {
  if (!goal) return '';
  if (ratio === undefined) return 'n/a';
  if ('max' in goal) return ratio <= goal.max ? 'PASS' : 'MISS';
  if (ratio < goal.min) return 'MISS';
  if (goal.stretch !== undefined) return ratio >= goal.stretch ? 'PASS, stretch PASS' : 'PASS, stretch MISS';
  return 'PASS';
}

function goalText(g: Goal | undefined): string {
  if (!g) return '-';
  if ('max' in g) return `<= ${g.max.toFixed(1)}x`;
  return `>= ${g.min.toFixed(1)}x` + (g.stretch !== undefined ? ` (stretch ${g.stretch.toFixed(1)}x)` : '');
}

/** The table as text lines, columns padded to fit; `columns` in order, then the ratio column headed `ratioHeader`. */
export function formatTable<C extends string = TargetName>(
  rows: readonly Row<C>[],
  columns: readonly C[] = ['direct', 'edgeward', 'microsocks', 'dante'] as readonly string[] as readonly C[],
  ratioHeader = 'edgeward/best peer',
): string {
  const header = ['metric', ...columns, ratioHeader, 'target', 'result'];
  const body = rows.map((r) => [
    r.metric,
    ...columns.map((c) => r.cells[c]),
    r.ratio === undefined ? '-' : `${r.ratio.toFixed(2)}x`,
    r.goalLabel ?? goalText(r.goal),
    r.result || '-',
  ]);
  const all = [header, ...body];
  const widths = header.map((_, i) => Math.max(...all.map((cols) => cols[i]!.length)));
  const line = (cols: string[]): string =>
    cols.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ').trimEnd();
  return [line(header), ...body.map(line)].join('\n');
}
