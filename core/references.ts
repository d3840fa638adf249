/**
 * A step's input may use an earlier step's output: `{{steps.plan.output}}` is the whole output of
 * the step named `plan`, `{{steps.plan.output#/items/0}}` the value a JSON pointer (RFC 6901)
 * names inside that output, which must then be JSON. References are checked at submit (only to
 * earlier steps, only to names that exist) and resolved inside the step's activity from the stored
 * outputs, so the workflow history holds the template, never the text. Pure.
 */

/** A step's name, as a reference spells it. */
export const STEP_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;

const REFERENCE = /\{\{\s*steps\.([^.\s}]+)\.output(#[^\s}]*)?\s*\}\}/g;

export interface StepReference {
  /** The template as written, e.g. `{{steps.plan.output#/title}}`. */
  template: string;
  name: string;
  /** The JSON pointer after `#`, or null for the whole output. */
  pointer: string | null;
}

/** A reference found in an input, with where it sits (`['messages', 0, 'content']`). */
export interface PlacedReference extends StepReference {
  path: (string | number)[];
}

export function referencesInText(text: string): StepReference[] {
  return [...text.matchAll(REFERENCE)].map((m) => ({ template: m[0], name: m[1]!, pointer: m[2] === undefined ? null : m[2].slice(1) }));
}

/** Every reference in every string of `value`. */
export function referencesIn(value: unknown, path: (string | number)[] = []): PlacedReference[] {
  if (typeof value === 'string') return referencesInText(value).map((r) => ({ ...r, path }));
  if (Array.isArray(value)) return value.flatMap((v, i) => referencesIn(v, [...path, i]));
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => referencesIn(v, [...path, k]));
  return [];
}

/** Why a pointer is malformed, or null: it is empty (the whole document) or starts with `/`. */
export function pointerProblem(pointer: string): string | null {
  if (pointer !== '' && !pointer.startsWith('/')) return `JSON pointer '${pointer}' must start with '/'`;
  if (/~(?![01])/.test(pointer)) return `JSON pointer '${pointer}' has a '~' not followed by 0 or 1`;
  return null;
}

export interface ReferenceIssue {
  /** Where, from the plan down: `[2, 'input', 'prompt']`. */
  path: (string | number)[];
  message: string;
}

/**
 * What is wrong with a plan's names and references: duplicate names, references to a name no
 * earlier step has (a later step's, its own, or nobody's), malformed pointers.
 */
export function checkPlanReferences(plan: readonly { name?: string; input: unknown }[]): ReferenceIssue[] {
  const issues: ReferenceIssue[] = [];
  const earlier = new Map<string, number>();
  const allNames = new Map<string, number>();
  plan.forEach((step, index) => {
    if (step.name !== undefined && !allNames.has(step.name)) allNames.set(step.name, index);
  });
  plan.forEach((step, index) => {
    for (const ref of referencesIn(step.input)) {
      const path = [index, 'input', ...ref.path];
      const named = allNames.get(ref.name);
      if (!earlier.has(ref.name)) {
        const why =
          named === undefined
            ? 'no step has that name'
            : named === index
              ? 'a step cannot use its own output'
              : `step ${named + 1} comes after this one; a step may only use earlier steps' outputs`;
        issues.push({ path, message: `${ref.template} refers to step '${ref.name}': ${why}` });
        continue;
      }
      const problem = ref.pointer === null ? null : pointerProblem(ref.pointer);
      if (problem) issues.push({ path, message: `${ref.template}: ${problem}` });
    }
    if (step.name !== undefined) {
      if (earlier.has(step.name)) issues.push({ path: [index, 'name'], message: `name '${step.name}' is already step ${earlier.get(step.name)! + 1}'s` });
      else earlier.set(step.name, index);
    }
  });
  return issues;
}

/** For each name the step's input refers to, the index of the step that has it (earlier steps only, as checked at submit). */
export function referencedSteps(plan: readonly { name?: string }[], stepIndex: number, input: unknown): Record<string, number> {
  const refs: Record<string, number> = {};
  for (const { name } of referencesIn(input)) {
    const index = plan.findIndex((s, i) => i < stepIndex && s.name === name);
    if (index >= 0) refs[name] = index;
  }
  return refs;
}

export class ReferenceError extends Error {
  override readonly name = 'ReferenceError';
}

/** An earlier step's stored output, as references read it. */
export interface ReferencedOutput {
  content: string;
  contentType: string;
}

/** The value `pointer` names in `document`, or undefined. */
export function resolvePointer(document: unknown, pointer: string): unknown {
  if (pointer === '') return document;
  let current: unknown = document;
  for (const raw of pointer.slice(1).split('/')) {
    const token = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(current)) {
      if (!/^(0|[1-9]\d*)$/.test(token)) return undefined;
      current = current[Number(token)];
    } else if (current !== null && typeof current === 'object' && Object.hasOwn(current, token)) {
      current = (current as Record<string, unknown>)[token];
    } else {
      return undefined;
    }
  }
  return current;
}

function substitute(text: string, outputs: ReadonlyMap<string, ReferencedOutput>): string {
  return text.replace(REFERENCE, (template: string, name: string, hash: string | undefined) => {
    const output = outputs.get(name);
    if (!output) throw new ReferenceError(`${template}: step '${name}' has no stored output`);
    if (hash === undefined) return output.content;
    let document: unknown;
    try {
      document = JSON.parse(output.content);
    } catch {
      throw new ReferenceError(`${template}: step '${name}' did not produce JSON, so a pointer cannot look inside it`);
    }
    const value = resolvePointer(document, hash.slice(1));
    if (value === undefined) throw new ReferenceError(`${template}: nothing at '${hash.slice(1)}' in step '${name}''s output`);
    return typeof value === 'string' ? value : JSON.stringify(value);
  });
}

/** `input` with every reference replaced by the output it names; throws `ReferenceError` when one cannot be. */
export function resolveReferences<T>(input: T, outputs: ReadonlyMap<string, ReferencedOutput>): T {
  const walk = (value: unknown): unknown => {
    if (typeof value === 'string') return substitute(value, outputs);
    if (Array.isArray(value)) return value.map(walk);
    if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    return value;
  };
  return walk(input) as T;
}
