import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..', '..');
/** The product's folders: a module in one may be read only after what it imports. */
const PRODUCT_DIRS = ['activities', 'api', 'auditor', 'bench', 'cli', 'compose', 'core', 'db', 'dispatch', 'drill', 'events', 'lib', 'testing', 'worker', 'workflows'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return name === 'node_modules' ? [] : sourceFiles(full);
    return full.endsWith('.ts') && !full.endsWith('.d.ts') ? [full] : [];
  });
}

/** Every relative import and re-export of a file, type-only ones too: a cycle of types still binds two modules together. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const match of text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+'(\.{1,2}\/[^']+)'/gms)) {
    const target = path.resolve(path.dirname(file), match[1]!);
    for (const candidate of [`${target}.ts`, path.join(target, 'index.ts')]) {
      try {
        if (statSync(candidate).isFile()) {
          found.push(candidate);
          break;
        }
      } catch {
        // not this form of the import
      }
    }
  }
  return found;
}

function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return cycles;
}

describe('the import graph', () => {
  const graph = new Map<string, string[]>();
  for (const dir of PRODUCT_DIRS) for (const file of sourceFiles(path.join(root, dir))) graph.set(file, importsOf(file));

  it('reads the imports it checks', () => {
    const policy = graph.get(path.join(root, 'core', 'policy.ts'));
    expect(policy).toContain(path.join(root, 'core', 'tools.ts'));
    expect(graph.size).toBeGreaterThan(150);
  });

  it('finds a cycle when there is one', () => {
    expect(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]]))).toEqual([['a', 'b', 'c', 'a']]);
  });

  it('has no cycle among the product modules', () => {
    const cycles = findCycles(graph).map((cycle) => cycle.map((file) => path.relative(root, file)).join(' -> '));
    expect(cycles).toEqual([]);
  });
});
