import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';

/**
 * Holds a loopback port, as a second instance or another program would. It hangs up on whoever
 * connects, so nothing waits on it for an answer.
 */
export async function occupyPort(): Promise<{ port: number; release(): Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    release: () => new Promise((r) => server.close(() => r())),
  };
}

/** Whether something accepts connections on the loopback port. */
export function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function isAlive(pid: number): boolean {
  try {
    // A zombie still answers signal 0; it holds no port and runs nothing, so it counts as gone.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export interface ProcessInfo {
  pid: number;
  command: string;
}

/** Every process under `root` (Linux /proc), with its command line. */
export function descendants(root: number): ProcessInfo[] {
  const children = new Map<number, number[]>();
  const commands = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name may hold spaces and parentheses: the fields after the last ')' are fixed.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const pid = Number(entry);
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
      commands.set(pid, readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim());
    } catch {
      // gone while we looked
    }
  }
  const found: ProcessInfo[] = [];
  const queue = [root];
  while (queue.length) {
    for (const pid of children.get(queue.shift()!) ?? []) {
      found.push({ pid, command: commands.get(pid) ?? '' });
      queue.push(pid);
    }
  }
  return found;
}

/**
 * Processes whose environment holds `name=value`, wherever they now hang in the process tree: an
 * orphan is re-parented away from whoever started it, but keeps its environment.
 */
export function processesWithEnv(name: string, value: string): ProcessInfo[] {
  const needle = `${name}=${value}`;
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(needle)) continue;
      const pid = Number(entry);
      if (isAlive(pid)) found.push({ pid, command: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim() });
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}
