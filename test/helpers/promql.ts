/** Words of PromQL that stand where a metric name could, but are not one. */
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan']);

/**
 * The metric names a PromQL expression selects. Not a parser: it removes everything that cannot
 * be a metric name (strings, label matchers, ranges, label lists, Grafana variables, numbers and
 * durations) and keeps the identifiers that are not called like a function.
 */
export function metricNames(expr: string): string[] {
  const cleaned = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ')
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/\b\d+(\.\d+)?(e[+-]?\d+)?(ms|[smhdwy])?\b/gi, ' ');
  const names = new Set<string>();
  for (const match of cleaned.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const after = cleaned.slice(match.index + match[0].length);
    if (/^\s*\(/.test(after) || KEYWORDS.has(match[0].toLowerCase())) continue;
    names.add(match[0]);
  }
  return [...names];
}

/** Names and types from a Prometheus text exposition: every `# TYPE` line, and any sample without one. */
export function exposedMetrics(exposition: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const line of exposition.split('\n')) {
    const typed = /^# TYPE (\S+) (\S+)/.exec(line);
    if (typed) types.set(typed[1]!, typed[2]!);
    else if (line && !line.startsWith('#')) {
      const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
      if (sample && !types.has(sample)) types.set(sample, 'untyped');
    }
  }
  return types;
}

/** A histogram's (or summary's) `_bucket`, `_sum` and `_count` series count as the metric itself. */
export function isExposed(name: string, exposed: Map<string, string>): boolean {
  if (exposed.has(name)) return true;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && ['histogram', 'summary'].includes(exposed.get(base) ?? '');
}
