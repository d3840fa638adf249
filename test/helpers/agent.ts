import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ToolServersConfig } from '../../activities/tools/config';
import { DEFAULT_POLICY, DEFAULT_TOOL_POLICY, type PolicyRules, type ToolPolicy } from '../../core/policy';
import type { StubMessage, StubReply } from './llm-stub';

const root = path.join(__dirname, '..', '..');

/** The unmodified filesystem MCP server from npm, over stdio, on `folder`. */
export function filesystemServer(folder: string): ToolServersConfig {
  return { fs: { command: process.execPath, args: [path.join(root, 'node_modules/@modelcontextprotocol/server-filesystem/dist/index.js'), folder], timeoutMs: 60_000 } };
}

/** The unmodified `everything` MCP server from npm, to start over Streamable HTTP on `port`. */
export function everythingServerCommand(port: number): { command: string; args: string[]; env: Record<string, string> } {
  return { command: process.execPath, args: [path.join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'], env: { PORT: String(port) } };
}

export function tempFolder(prefix: string): { folder: string; remove: () => void } {
  const folder = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { folder, remove: () => rmSync(folder, { recursive: true, force: true }) };
}

/** A tenant policy that lets agents use `allow`. */
export function agentPolicy(tools: Partial<ToolPolicy>, rules: Partial<PolicyRules> = {}): Partial<PolicyRules> {
  return { ...rules, tools: { ...DEFAULT_TOOL_POLICY, ...tools }, maxSteps: rules.maxSteps ?? DEFAULT_POLICY.maxSteps };
}

/** The tool results the model has been given so far in this conversation. */
export function toolResults(messages: StubMessage[]): string[] {
  return messages.filter((m) => m.role === 'tool').map((m) => m.content ?? '');
}

/** A scripted model: the n-th reply of a conversation is the n-th of `turns` (counted by the assistant messages it holds). */
export function scriptedModel(turns: ((messages: StubMessage[]) => StubReply)[]): (body: { messages: StubMessage[] }) => StubReply {
  return (body) => {
    const turn = body.messages.filter((m) => m.role === 'assistant').length;
    return turns[Math.min(turn, turns.length - 1)]!(body.messages);
  };
}
