#!/usr/bin/env node
// Fails when src/ has an import cycle: between modules, or between folders (a folder that imports
// another folder which, directly or not, imports it back). Folders are layers; data flows one way
// (docs/architecture.md). Uses madge's module graph (type-only imports count too).
import madge from 'madge';

const graph = (await madge('src', { fileExtensions: ['ts'], tsConfig: 'tsconfig.json' })).obj();
const folderOf = (file) => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '(src)');

const problems = [];
const modules = await madge('src', { fileExtensions: ['ts'], tsConfig: 'tsconfig.json' });
for (const cycle of modules.circular()) problems.push(`module cycle: ${[...cycle, cycle[0]].join(' -> ')}`);

// folder graph, with one import that makes each edge (to name it in the message)
const edges = new Map();
for (const [from, deps] of Object.entries(graph)) {
  for (const to of deps) {
    const a = folderOf(from);
    const b = folderOf(to);
    if (a === b) continue;
    if (!edges.has(a)) edges.set(a, new Map());
    if (!edges.get(a).has(b)) edges.get(a).set(b, `${from} imports ${to}`);
  }
}
// Tarjan's strongly connected components: every component of more than one folder is a cycle
let index = 0;
const idx = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const folders = new Set([...edges.keys(), ...[...edges.values()].flatMap((m) => [...m.keys()])]);
function connect(v) {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of edges.get(v)?.keys() ?? []) {
    if (!idx.has(w)) {
      connect(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const comp = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      comp.push(w);
    } while (w !== v);
    if (comp.length > 1) {
      const inside = new Set(comp);
      const why = comp.flatMap((a) => [...(edges.get(a) ?? new Map()).entries()].filter(([b]) => inside.has(b)).map(([, e]) => `    ${e}`));
      problems.push(`folder cycle between ${comp.sort().join(', ')}:\n${why.join('\n')}`);
    }
  }
}
for (const f of folders) if (!idx.has(f)) connect(f);

if (problems.length > 0) {
  process.stderr.write(`check-layers: ${problems.length} import cycle(s) in src/:\n${problems.join('\n')}\n`);
  process.exit(1);
}
process.stdout.write(`check-layers: ${Object.keys(graph).length} modules in ${folders.size} folders, no import cycle\n`);
