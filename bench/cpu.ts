import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/**
 * CPU time by process, read from /proc (utime + stime of every thread of the process, which is what
 * /proc/<pid>/stat sums): the figure that does not move with a noisy machine the way wall-clock
 * latency does. Each source names the processes it stands for at the moment it is sampled, so a
 * pool's connection opened between two samples counts from zero and one that closed is lost (pools
 * here are kept open for the whole bench).
 */
export interface CpuSource {
  name: string;
  pids(): Promise<number[]>;
}

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function stat(pid: number): { ppid: number; cpuMs: number; comm: string } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: the fields after it start after its last ')'.
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const fields = text.slice(close + 2).split(' ');
    // After comm: state(0) ppid(1) ... utime(11) stime(12), as proc(5) numbers them from 3.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { ppid: Number(fields[1]), cpuMs: (ticks * 1000) / TICKS_PER_SECOND, comm };
  } catch {
    return null; // gone
  }
}

/** This process (every thread: JS, the SDK's Rust core, libuv). */
export const thisProcess: CpuSource = { name: 'bench process (API + workers)', pids: async () => [process.pid] };

/** One process of the product started by the bench (its API, its worker), while it lives. */
export function oneProcess(name: string, pid: number): CpuSource {
  return { name, pids: async () => [pid] };
}

/**
 * Every process started under this one, but this one and those `excluded` (with what they started):
 * the Temporal dev server and what it runs.
 */
export function childrenOfThisProcess(name: string, excluded: readonly number[] = []): CpuSource {
  return {
    name,
    async pids() {
      const parents = new Map<number, number>();
      for (const entry of readdirSync('/proc')) {
        const pid = Number(entry);
        if (!Number.isInteger(pid)) continue;
        const s = stat(pid);
        if (s) parents.set(pid, s.ppid);
      }
      const descends = (pid: number): boolean => {
        for (let p = parents.get(pid); p !== undefined && p > 1; p = parents.get(p)) {
          if (excluded.includes(p)) return false;
          if (p === process.pid) return true;
        }
        return false;
      };
      return [...parents.keys()].filter((pid) => pid !== process.pid && !excluded.includes(pid) && descends(pid));
    },
  };
}

export interface CpuSample {
  at: number;
  bySource: Map<string, Map<number, number>>;
}

export async function sampleCpu(sources: readonly CpuSource[]): Promise<CpuSample> {
  const bySource = new Map<string, Map<number, number>>();
  for (const source of sources) {
    const byPid = new Map<number, number>();
    for (const pid of await source.pids()) {
      const s = stat(pid);
      if (s) byPid.set(pid, s.cpuMs);
    }
    bySource.set(source.name, byPid);
  }
  return { at: performance.now(), bySource };
}

/** CPU milliseconds each source spent between two samples (a process new in the second counts from zero). */
export function cpuBetween(before: CpuSample, after: CpuSample): Map<string, number> {
  const spent = new Map<string, number>();
  for (const [name, pids] of after.bySource) {
    const earlier = before.bySource.get(name) ?? new Map<number, number>();
    let ms = 0;
    for (const [pid, cpuMs] of pids) ms += cpuMs - (earlier.get(pid) ?? 0);
    spent.set(name, ms);
  }
  return spent;
}

/** A process's resident memory, MiB (`VmRSS` of /proc/<pid>/status); null once it is gone. */
export function rssMiB(pid: number): number | null {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
    return line ? Number(line.split(/\s+/)[1]) / 1024 : null;
  } catch {
    return null;
  }
}
