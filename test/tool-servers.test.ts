import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TOOL_TIMEOUT_MS, loadToolServersConfig, type ToolServersConfig } from '../activities/tools/config';
import { functionNames, ToolCallLostError, ToolServers, type ToolCallOutcome } from '../activities/tools/servers';
import { freePort } from '../lib/listen';
import { descendants, isAlive } from './helpers/processes';
import { waitFor } from './helpers/wait';

const servers = path.join(__dirname, '..', 'node_modules', '@modelcontextprotocol');
const FILESYSTEM_SERVER = path.join(servers, 'server-filesystem', 'dist', 'index.js');
const MEMORY_SERVER = path.join(servers, 'server-memory', 'dist', 'index.js');
const EVERYTHING_SERVER = path.join(servers, 'server-everything', 'dist', 'index.js');

const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const HELLO = 'héllo, tools\nsecond line\n';

let tmp: string;
let allowed: string;
let fifo: string;
let everything: ChildProcess;
let latePort: number;
let late: ChildProcess | undefined;
let registry: ToolServers;
const logs: { level: number; msg: string; toolServer?: string }[] = [];

/** The everything server over Streamable HTTP on `port` (it reads PORT and serves `/mcp`). */
async function startEverything(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [EVERYTHING_SERVER, 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', () => {});
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(`everything server on port ${port}`, async () => {
    if (child.exitCode !== null) throw new Error(`everything server exited: ${output}`);
    return output.includes('listening on port');
  });
  return child;
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** The stdio server processes this test process started, found by the file each one runs. */
function serverProcesses(script: string): number[] {
  return descendants(process.pid)
    .filter((p) => p.command.includes(script))
    .map((p) => p.pid);
}

function fsPid(): number | undefined {
  return descendants(process.pid).find((p) => p.command.includes(FILESYSTEM_SERVER) && p.command.endsWith(allowed))?.pid;
}

async function lostCall(call: Promise<ToolCallOutcome>): Promise<ToolCallLostError> {
  const error = await call.then(
    (outcome) => new Error(`expected a lost call, got ${JSON.stringify(outcome)}`),
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(ToolCallLostError);
  return error as ToolCallLostError;
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tool-servers-'));
  allowed = path.join(tmp, 'allowed');
  mkdirSync(allowed);
  writeFileSync(path.join(allowed, 'hello.txt'), HELLO);
  // Nobody writes to it: reading it blocks, which makes a slow call.
  fifo = path.join(allowed, 'never-written.fifo');
  execFileSync('mkfifo', [fifo]);

  const everythingPort = await freePort();
  latePort = await freePort();
  everything = await startEverything(everythingPort);

  const config: ToolServersConfig = {
    fs: { command: process.execPath, args: [FILESYSTEM_SERVER, allowed], timeoutMs: DEFAULT_TOOL_TIMEOUT_MS },
    impatient: { command: process.execPath, args: [FILESYSTEM_SERVER, allowed, tmp], timeoutMs: 500 },
    memory: { command: process.execPath, args: [MEMORY_SERVER], env: { MEMORY_FILE_PATH: path.join(tmp, 'memory.jsonl') }, timeoutMs: DEFAULT_TOOL_TIMEOUT_MS },
    every: { url: `http://127.0.0.1:${everythingPort}/mcp`, timeoutMs: DEFAULT_TOOL_TIMEOUT_MS },
    late: { url: `http://127.0.0.1:${latePort}/mcp`, timeoutMs: DEFAULT_TOOL_TIMEOUT_MS },
    missing: { command: path.join(tmp, 'no-such-server'), timeoutMs: DEFAULT_TOOL_TIMEOUT_MS },
    crashing: { command: process.execPath, args: ['-e', 'console.error("boom: TOKEN is not set"); process.exit(3)'], timeoutMs: DEFAULT_TOOL_TIMEOUT_MS },
  };
  const logger = pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  registry = await ToolServers.connect(config, { logger, clientName: 'tool-servers-test', retryIntervalMs: 300 });
});

afterAll(async () => {
  await registry?.close();
  await stop(everything);
  await stop(late);
  for (const pid of [...serverProcesses(FILESYSTEM_SERVER), ...serverProcesses(MEMORY_SERVER)]) process.kill(pid, 'SIGKILL');
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the tools the servers list', () => {
  it('are named server.tool, with what each server says of them', () => {
    const ids = registry.tools().map((t) => t.id);
    expect(ids).toEqual(expect.arrayContaining(['fs.read_text_file', 'fs.write_file', 'fs.edit_file', 'fs.move_file', 'memory.create_entities', 'every.get-sum']));
    const read = registry.get('fs.read_text_file')!;
    expect(read).toMatchObject({ server: 'fs', name: 'read_text_file', annotations: { readOnlyHint: true } });
    expect(read.description).toMatch(/contents of a file/);
    expect(read.inputSchema).toMatchObject({ type: 'object', required: ['path'] });
  });

  it('are retry-safe only when the server marks them read-only or idempotent', () => {
    const retrySafe = (id: string) => registry.get(id)!.retrySafe;
    expect(retrySafe('fs.read_text_file')).toBe(true); // readOnlyHint
    expect(retrySafe('fs.write_file')).toBe(true); // idempotentHint, though destructive
    expect(retrySafe('memory.delete_entities')).toBe(true); // idempotentHint
    expect(retrySafe('fs.edit_file')).toBe(false);
    expect(retrySafe('fs.move_file')).toBe(false);
    expect(retrySafe('memory.create_entities')).toBe(false);
    expect(retrySafe('every.toggle-simulated-logging')).toBe(false);
  });

  it('have function names a model accepts, one per tool, that lead back to it', () => {
    const tools = registry.tools();
    for (const tool of tools) {
      expect(tool.functionName).toMatch(FUNCTION_NAME);
      expect(registry.byFunctionName(tool.functionName)).toBe(tool);
    }
    expect(new Set(tools.map((t) => t.functionName)).size).toBe(tools.length);
    expect(registry.get('fs.read_text_file')!.functionName).toBe('fs__read_text_file');
    expect(registry.get('every.get-sum')!.functionName).toBe('every__get-sum');
    expect(registry.byFunctionName('fs.read_text_file')).toBeUndefined();
  });
});

describe('function names', () => {
  it('stay valid and distinct when ids clash, are too long or hold characters a model refuses', () => {
    const ids = ['a.b__c', 'a__b.c', 'fs.read.file', 'fs.read_file', 'fs.lire-ü', `${'s'.repeat(32)}.${'t'.repeat(100)}`, `${'s'.repeat(32)}.${'t'.repeat(101)}`];
    const names = functionNames(ids);
    expect(new Set(names.values()).size).toBe(ids.length);
    for (const name of names.values()) expect(name).toMatch(FUNCTION_NAME);
    expect(names.get('fs.read_file')).toBe('fs__read_file');
    expect(names.get('a.b__c')).not.toBe('a__b__c');
    // A tool keeps its name whatever else is listed with it or in which order.
    expect(functionNames([...ids].reverse()).get('fs.lire-ü')).toBe(names.get('fs.lire-ü'));
    expect(functionNames(['fs.lire-ü']).get('fs.lire-ü')).toBe(names.get('fs.lire-ü'));
  });
});

describe('arguments', () => {
  it('pass when they match the tool\'s input schema', () => {
    expect(registry.validateArguments('fs.read_text_file', { path: '/x', head: 2 })).toEqual({ ok: true });
  });

  it('are refused with the field and the reason when they do not', () => {
    const missing = registry.validateArguments('fs.read_text_file', {});
    expect(missing).toEqual({ ok: false, error: expect.stringContaining("must have required property 'path'") });
    const wrongType = registry.validateArguments('fs.read_text_file', { path: 5 });
    expect(wrongType).toEqual({ ok: false, error: expect.stringContaining('arguments/path must be string') });
    const badEnum = registry.validateArguments('every.get-structured-content', { location: 'Paris' });
    expect(badEnum).toEqual({ ok: false, error: expect.stringContaining('arguments/location must be equal to one of the allowed values') });
  });

  it('must be a JSON object', () => {
    for (const args of ['path', ['/x'], null, 3]) {
      expect(registry.validateArguments('fs.read_text_file', args)).toEqual({ ok: false, error: 'arguments must be a JSON object' });
    }
  });

  it('of a tool nobody lists are refused', () => {
    expect(registry.validateArguments('fs.no_such_tool', {})).toEqual({ ok: false, error: expect.stringContaining('fs.no_such_tool') });
  });
});

describe('a call', () => {
  it("returns the tool's text, and its structured content", async () => {
    const outcome = await registry.call('fs.read_text_file', { path: path.join(allowed, 'hello.txt') });
    expect(outcome).toEqual({ kind: 'result', isError: false, text: HELLO, structured: { content: HELLO } });
  });

  it('reports an error the tool itself reports as a result', async () => {
    const outcome = await registry.call('fs.read_text_file', { path: '/etc/hostname' });
    expect(outcome).toMatchObject({ kind: 'result', isError: true, text: expect.stringMatching(/outside allowed directories/) });
  });

  it('has its side effect once', async () => {
    const target = path.join(allowed, 'written.txt');
    expect(await registry.call('fs.write_file', { path: target, content: 'written' })).toMatchObject({ kind: 'result', isError: false });
    expect(await registry.call('fs.read_text_file', { path: target })).toMatchObject({ text: 'written' });
    const created = await registry.call('memory.create_entities', { entities: [{ name: 'Ada', entityType: 'person', observations: ['wrote the first program'] }] });
    expect(created).toMatchObject({ kind: 'result', isError: false });
    expect(await registry.call('memory.read_graph', {})).toMatchObject({ kind: 'result', text: expect.stringContaining('wrote the first program') });
  });

  it('is refused when the server answers with a JSON-RPC error instead of running the tool', async () => {
    // Arguments that are no object fail the server's request schema before any tool runs.
    const outcome = await registry.call('fs.write_file', ['not', 'an', 'object'] as unknown as Record<string, unknown>);
    expect(outcome).toEqual({ kind: 'refused', error: expect.stringMatching(/MCP error -32603.*expected record/s) });
  });

  it('to a tool or server the registry does not list is refused without reaching any server', async () => {
    expect(await registry.call('fs.no_such_tool', {})).toEqual({ kind: 'refused', error: 'tool server fs lists no tool no_such_tool' });
    expect(await registry.call('nowhere.tool', {})).toEqual({ kind: 'refused', error: expect.stringContaining('nowhere.tool') });
  });

  it('renders images and resources briefly and passes structured content on', async () => {
    const image = await registry.call('every.get-tiny-image', {});
    expect(image).toMatchObject({ kind: 'result', text: expect.stringMatching(/\[image image\/png, \d+ bytes base64\]/) });
    const embedded = await registry.call('every.get-resource-reference', { resourceType: 'Text', resourceId: 1 });
    expect(embedded).toMatchObject({ text: expect.stringContaining('[resource demo://resource/dynamic/text/1]\nResource 1: This is a plaintext resource') });
    const links = await registry.call('every.get-resource-links', { count: 2 });
    expect(links).toMatchObject({ text: expect.stringContaining('[resource demo://resource/dynamic/text/2]') });
    const structured = await registry.call('every.get-structured-content', { location: 'Chicago' });
    expect(structured).toMatchObject({ kind: 'result', isError: false, structured: { temperature: expect.any(Number), conditions: expect.any(String) } });
  });

  it('that outlasts the server\'s timeoutMs is lost after it was sent, and the server stays usable', async () => {
    const pidsBefore = serverProcesses(FILESYSTEM_SERVER);
    const started = Date.now();
    const error = await lostCall(registry.call('impatient.read_text_file', { path: fifo }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(error).toMatchObject({ name: 'ToolCallLostError', sentRequest: true, message: expect.stringContaining('timed out') });
    expect(await registry.call('impatient.read_text_file', { path: path.join(allowed, 'hello.txt') })).toMatchObject({ text: HELLO });
    expect(serverProcesses(FILESYSTEM_SERVER)).toEqual(pidsBefore);
  });

  it("cut short by the caller's signal is lost after it was sent; one already cancelled is never sent", async () => {
    const error = await lostCall(registry.call('fs.read_text_file', { path: fifo }, { signal: AbortSignal.timeout(300) }));
    expect(error.sentRequest).toBe(true);
    const notSent = await lostCall(registry.call('fs.write_file', { path: path.join(allowed, 'never.txt'), content: 'x' }, { signal: AbortSignal.abort() }));
    expect(notSent.sentRequest).toBe(false);
    expect(await registry.call('fs.list_directory', { path: allowed })).toMatchObject({ text: expect.not.stringContaining('never.txt') });
  });
});

describe('a stdio server whose process dies', () => {
  it('loses the call in flight, and is started again for the next one', async () => {
    const pid = fsPid()!;
    expect(pid).toBeDefined();
    const pending = registry.call('fs.read_text_file', { path: fifo });
    const early = await Promise.race([pending.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r('pending'), 500))]);
    expect(early).toBe('pending');

    process.kill(pid, 'SIGKILL');
    const error = await lostCall(pending);
    expect(error.sentRequest).toBe(true);
    expect(error.message).toMatch(/Connection closed/);
    await waitFor('the killed server to be gone', async () => !isAlive(pid));

    expect(await registry.call('fs.read_text_file', { path: path.join(allowed, 'hello.txt') })).toMatchObject({ kind: 'result', text: HELLO });
    expect(fsPid()).not.toBe(pid);
    expect(logs.some((l) => l.toolServer === 'fs' && /connection closed/.test(l.msg))).toBe(true);
  });
});

describe('a server that is down when the worker starts', () => {
  it('is logged and left out while the others work', async () => {
    expect(registry.tools().some((t) => t.server === 'late')).toBe(false);
    expect(logs.some((l) => l.toolServer === 'late' && l.level === 40 && /unreachable/.test(l.msg))).toBe(true);
    const error = await lostCall(registry.call('late.get-sum', { a: 1, b: 2 }));
    expect(error.sentRequest).toBe(false);
    expect(await registry.call('every.get-sum', { a: 1, b: 2 })).toMatchObject({ text: 'The sum of 1 and 2 is 3.' });
  });

  it('is picked up once it starts', async () => {
    late = await startEverything(latePort);
    await waitFor('the late server\'s tools', async () => registry.tools().some((t) => t.id === 'late.get-sum'), 10_000);
    expect(await registry.call('late.get-sum', { a: 2, b: 3 })).toMatchObject({ kind: 'result', text: 'The sum of 2 and 3 is 5.' });
  });

  it('that goes away again loses a call it never received, and is reconnected when it is back', async () => {
    await stop(late);
    const error = await lostCall(registry.call('late.get-sum', { a: 1, b: 1 }));
    expect(error.sentRequest).toBe(false);
    late = await startEverything(latePort);
    // The old session died with the old process: the next call must open a new one.
    const outcome = await waitFor('a call to the restarted server', () => registry.call('late.get-sum', { a: 4, b: 4 }).catch(() => undefined), 10_000);
    expect(outcome).toMatchObject({ kind: 'result', text: 'The sum of 4 and 4 is 8.' });
  });

  it("that cannot start says why, with the last lines of the server's stderr", async () => {
    const crashed = await lostCall(registry.call('crashing.anything', {}));
    expect(crashed.sentRequest).toBe(false);
    expect(crashed.message).toContain('boom: TOKEN is not set');
    const missing = await lostCall(registry.call('missing.anything', {}));
    expect(missing.message).toMatch(/ENOENT/);
  });
});

describe('closing', () => {
  it('ends every stdio server process', async () => {
    expect(serverProcesses(FILESYSTEM_SERVER).length).toBeGreaterThan(0);
    expect(serverProcesses(MEMORY_SERVER)).toHaveLength(1);
    await registry.close();
    await waitFor('stdio servers to exit', async () => serverProcesses(FILESYSTEM_SERVER).length + serverProcesses(MEMORY_SERVER).length === 0, 15_000);
  });
});

describe('the tool server configuration', () => {
  const good = { fs: { command: 'node', args: ['server.js', '/data'], env: { TOKEN: 't' } }, web: { url: 'https://tools.example/mcp', headers: { authorization: 'Bearer x' }, timeoutMs: 5000 } };

  it('reads inline JSON and fills in the default timeout', () => {
    expect(loadToolServersConfig({ TOOL_SERVERS: JSON.stringify(good) })).toEqual({
      fs: { ...good.fs, timeoutMs: 60_000 },
      web: good.web,
    });
  });

  it('reads a file', () => {
    const file = path.join(tmp, 'tool-servers.json');
    writeFileSync(file, JSON.stringify(good));
    expect(loadToolServersConfig({ TOOL_SERVERS_FILE: file })).toMatchObject({ web: { url: 'https://tools.example/mcp' } });
    expect(() => loadToolServersConfig({ TOOL_SERVERS_FILE: path.join(tmp, 'absent.json') })).toThrow(/TOOL_SERVERS_FILE: cannot read .*absent\.json/);
  });

  it('is empty when neither variable is set', () => {
    expect(loadToolServersConfig({})).toEqual({});
  });

  it('refuses both variables at once', () => {
    expect(() => loadToolServersConfig({ TOOL_SERVERS: '{}', TOOL_SERVERS_FILE: '/x.json' })).toThrow(/TOOL_SERVERS or TOOL_SERVERS_FILE, not both/);
  });

  it('names the variable and the problem', () => {
    const problem = (value: unknown) => {
      try {
        loadToolServersConfig({ TOOL_SERVERS: typeof value === 'string' ? value : JSON.stringify(value) });
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error('expected the configuration to be refused');
    };
    expect(problem('{"fs": ')).toMatch(/^invalid configuration: TOOL_SERVERS is not JSON: /);
    expect(problem({ Fs: { command: 'x' } })).toBe(`invalid configuration: TOOL_SERVERS: Fs: not a server name: names match ${String(/^[a-z][a-z0-9_-]{0,31}$/)}`);
    expect(problem({ 'fs.x': { command: 'x' } })).toMatch(/fs\.x: not a server name/);
    expect(problem({ fs: { command: 'x', args: ['ok', 1] } })).toBe('invalid configuration: TOOL_SERVERS: fs.args.1: Invalid input: expected string, received number');
    expect(problem({ fs: { args: [] } })).toMatch(/TOOL_SERVERS: fs: set either "command" \(a stdio server\) or "url"/);
    expect(problem({ fs: { command: 'x', url: 'http://a' } })).toMatch(/fs: set either/);
    expect(problem({ web: { url: 'ftp://tools.example' } })).toBe('invalid configuration: TOOL_SERVERS: web.url: an http or https URL');
    expect(problem({ web: { url: 'https://a', header: {} } })).toMatch(/web: Unrecognized key: "header"/);
    expect(problem({ fs: { command: 'x', timeoutMs: 0 } })).toMatch(/fs\.timeoutMs: Too small/);
    expect(problem([])).toMatch(/TOOL_SERVERS: \(top level\): Invalid input: expected record, received array/);
  });
});
