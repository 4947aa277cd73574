// Where a Node process spends its CPU: reads a V8 .cpuprofile (node --cpu-prof) and sums self time
// per function and per source file. Used by `npm run bench -- --profile` for edgeward.
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  name: string;
  ms: number;
  /** share of the busy (non-idle) time */
  share: number;
}

export interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  functions: ProfileEntry[];
  files: ProfileEntry[];
}

function shortUrl(url: string, root: string): string {
  if (url === '') return '(native / V8)';
  const path = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  if (path.startsWith(root + '/node_modules/')) return path.slice(root.length + 1).split('/').slice(0, 2).join('/');
  return path.startsWith(root + '/') ? path.slice(root.length + 1) : path;
}

/**
 * Self time per function and per file, top `top` of each, summed over .cpuprofile files (one per
 * thread: node --cpu-prof writes the main thread's and each worker thread's).
 */
export function summarizeProfile(paths: readonly string[], root: string, top = 15): ProfileSummary {
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (const file of paths) {
    const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<number, number>();
    // timeDeltas[i] is the time since the previous sample; charge it to the sample it leads to
    for (let i = 0; i < p.samples.length; i++) {
      const id = p.samples[i]!;
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, p.timeDeltas[i] ?? 0));
    }
    for (const [id, us] of selfUs) {
      const n = byId.get(id);
      if (!n) continue;
      const { functionName, url, lineNumber } = n.callFrame;
      if (functionName === '(idle)') {
        idle += us;
        continue;
      }
      busy += us;
      const where = shortUrl(url, root);
      const name = functionName.startsWith('(') ? functionName : `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
      fn.set(name, (fn.get(name) ?? 0) + us);
      const fileKey = functionName.startsWith('(') ? functionName : where;
      files.set(fileKey, (files.get(fileKey) ?? 0) + us);
    }
  }
  const rank = (m: Map<string, number>): ProfileEntry[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, share: busy > 0 ? Math.round((us / busy) * 1000) / 1000 : 0 }));
  return { busyMs: Math.round(busy / 1000), idleMs: Math.round(idle / 1000), functions: rank(fn), files: rank(files) };
}

/** The summary as indented text lines. */
export function formatProfile(s: ProfileSummary): string {
  const lines = [`  busy ${s.busyMs} ms, idle ${s.idleMs} ms`, '  self time by file:'];
  for (const e of s.files) lines.push(`    ${(e.share * 100).toFixed(1).padStart(5)}%  ${e.name}`);
  lines.push('  self time by function:');
  for (const e of s.functions) lines.push(`    ${(e.share * 100).toFixed(1).padStart(5)}%  ${e.name}`);
  return lines.join('\n');
}
