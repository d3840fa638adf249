import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

/**
 * Headless Chromium driven over the Chrome DevTools Protocol, for tests that must see what a
 * browser renders (the Temporal Web UI). The protocol runs over `--remote-debugging-pipe`
 * (messages separated by NUL on file descriptors 3 and 4), so nothing beyond Node is needed:
 * no WebSocket client, no puppeteer.
 */

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

/** The Chromium to use: `CHROMIUM_PATH`, else the first one installed where Debian and Ubuntu put it; null when none is. */
export function chromiumPath(): string | null {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

interface Pending {
  resolve: (value: any) => void;
  reject: (err: Error) => void;
  method: string;
}

type Listener = (params: any, sessionId: string | undefined) => void;

class Cdp {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Listener[]>();
  private buffer = '';

  constructor(
    private readonly input: Writable,
    output: Readable,
  ) {
    output.setEncoding('utf8');
    output.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf('\0'); end >= 0; end = this.buffer.indexOf('\0')) {
        const message = JSON.parse(this.buffer.slice(0, end));
        this.buffer = this.buffer.slice(end + 1);
        this.dispatch(message);
      }
    });
  }

  private dispatch(message: { id?: number; method?: string; params?: unknown; result?: unknown; error?: { message: string }; sessionId?: string }): void {
    if (message.id !== undefined) {
      const pending = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (!pending) return;
      if (message.error) pending.reject(new Error(`${pending.method}: ${message.error.message}`));
      else pending.resolve(message.result);
      return;
    }
    for (const listener of this.listeners.get(message.method ?? '') ?? []) listener(message.params, message.sessionId);
  }

  send<T = any>(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.input.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  }

  on(method: string, listener: Listener): void {
    this.listeners.set(method, [...(this.listeners.get(method) ?? []), listener]);
  }

  failAll(err: Error): void {
    for (const pending of this.pending.values()) pending.reject(err);
    this.pending.clear();
  }
}

/** One tab: its frames (iframes included) are read in isolated worlds of their own. */
export interface Page {
  /** Every URL the tab requested, from any of its frames, in order. */
  readonly requests: string[];
  /** Evaluates `expression` (its value returned by value) in the tab's top frame. */
  evaluate<T>(expression: string): Promise<T>;
  /** Evaluates `expression` (its value returned by value) in every frame of the tab; one result per frame. */
  evaluateInFrames<T>(expression: string): Promise<{ frameUrl: string; value: T }[]>;
}

export interface Browser {
  open(url: string): Promise<Page>;
  close(): Promise<void>;
}

interface FrameTree {
  frame: { id: string; url: string };
  childFrames?: FrameTree[];
}

function framesOf(tree: FrameTree): FrameTree['frame'][] {
  return [tree.frame, ...(tree.childFrames ?? []).flatMap(framesOf)];
}

/** Starts headless Chromium with a profile of its own (removed on close). */
export async function launchChromium(executable: string): Promise<Browser> {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'governed-chromium-'));
  const child: ChildProcess = spawn(
    executable,
    [
      '--headless',
      '--remote-debugging-pipe',
      `--user-data-dir=${profile}`,
      '--no-sandbox', // CI runs as root, where Chromium's sandbox cannot start
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--no-first-run',
      '--no-default-browser-check',
      // One process for the page and its iframes, so one session sees all their requests.
      '--disable-features=IsolateOrigins,site-per-process',
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const cdp = new Cdp(child.stdio[3] as Writable, child.stdio[4] as Readable);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      cdp.failAll(new Error(`chromium exited (${code}): ${stderr}`));
      resolve();
    }),
  );
  await cdp.send('Browser.getVersion');

  return {
    async open(url) {
      const { targetId } = await cdp.send<{ targetId: string }>('Target.createTarget', { url: 'about:blank' });
      const { sessionId } = await cdp.send<{ sessionId: string }>('Target.attachToTarget', { targetId, flatten: true });
      const requests: string[] = [];
      cdp.on('Network.requestWillBeSent', (params, from) => {
        if (from === sessionId) requests.push(params.request.url);
      });
      await cdp.send('Network.enable', {}, sessionId);
      await cdp.send('Page.enable', {}, sessionId);
      await cdp.send('Page.navigate', { url }, sessionId);
      /** In an isolated world of the frame's own: the page's scripts cannot see or change what the test does. */
      const evaluateIn = async (frame: FrameTree['frame'], expression: string): Promise<unknown> => {
        const { executionContextId } = await cdp.send<{ executionContextId: number }>('Page.createIsolatedWorld', { frameId: frame.id, worldName: 'governed-test' }, sessionId);
        const { result, exceptionDetails } = await cdp.send('Runtime.evaluate', { expression, contextId: executionContextId, returnByValue: true }, sessionId);
        if (exceptionDetails) throw new Error(`in ${frame.url}: ${JSON.stringify(exceptionDetails)}`);
        return result.value;
      };
      const frameTree = async () => (await cdp.send<{ frameTree: FrameTree }>('Page.getFrameTree', {}, sessionId)).frameTree;
      return {
        requests,
        async evaluate<T>(expression: string) {
          return (await evaluateIn((await frameTree()).frame, expression)) as T;
        },
        async evaluateInFrames<T>(expression: string) {
          const results: { frameUrl: string; value: T }[] = [];
          for (const frame of framesOf(await frameTree())) {
            try {
              results.push({ frameUrl: frame.url, value: (await evaluateIn(frame, expression)) as T });
            } catch (err) {
              // A frame that went away between the tree and the evaluation is no longer on the page.
              if (!/No frame|Cannot find context|detached/i.test(String(err))) throw err;
            }
          }
          return results;
        },
      };
    },
    async close() {
      await cdp.send('Browser.close').catch(() => {});
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
