import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { TOOL_SERVER_NAME } from '../../core/tools';

/**
 * The MCP servers the worker may call tools on. Only the operator declares them (in the worker's
 * environment); a tenant chooses among their tools by policy and never names a command or a URL.
 */

/** How long one tool call may take when the server's entry does not say. */
export const DEFAULT_TOOL_TIMEOUT_MS = 60_000;

const timeoutMs = z.number().int().positive().max(3_600_000).default(DEFAULT_TOOL_TIMEOUT_MS);
const stringRecord = z.record(z.string(), z.string());

/** A server the worker starts as a child process and talks to over stdin and stdout. */
const stdioServerSchema = z.strictObject({
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  /** Added to the few variables the SDK passes on (PATH, HOME, …): the worker's secrets stay in the worker. */
  env: stringRecord.optional(),
  cwd: z.string().min(1).optional(),
  timeoutMs,
});

/** A server already running somewhere, reached over Streamable HTTP. */
const httpServerSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'an http or https URL' }),
  headers: stringRecord.optional(),
  timeoutMs,
});

export type StdioToolServerConfig = z.infer<typeof stdioServerSchema>;
export type HttpToolServerConfig = z.infer<typeof httpServerSchema>;
export type ToolServerConfig = StdioToolServerConfig | HttpToolServerConfig;

/**
 * The entry's kind is picked by the key it names, so a mistake is reported against that kind
 * alone: a union of both would answer "Invalid input" with the other kind's complaints mixed in.
 */
const toolServerSchema = z.record(z.string(), z.unknown()).transform((entry, ctx): ToolServerConfig => {
  if ('command' in entry === 'url' in entry) {
    ctx.addIssue({ code: 'custom', message: 'set either "command" (a stdio server) or "url" (a Streamable HTTP server)' });
    return z.NEVER;
  }
  const parsed = ('url' in entry ? httpServerSchema : stdioServerSchema).safeParse(entry);
  if (!parsed.success) {
    for (const { path, message } of parsed.error.issues) ctx.addIssue({ code: 'custom', path, message });
    return z.NEVER;
  }
  return parsed.data;
});

const toolServersSchema = z.record(z.string().regex(TOOL_SERVER_NAME), toolServerSchema, {
  error: (issue) => (issue.code === 'invalid_key' ? `not a server name: names match ${TOOL_SERVER_NAME}` : undefined),
});

export type ToolServersConfig = Record<string, ToolServerConfig>;

/**
 * The operator's tool servers from `TOOL_SERVERS` (inline JSON) or `TOOL_SERVERS_FILE` (a JSON
 * file, the place for headers and env that carry secrets); none when neither is set. A bad value
 * throws with the variable's name, the entry's path and what is wrong, so the worker does not start.
 */
export function loadToolServersConfig(env: NodeJS.ProcessEnv): ToolServersConfig {
  const inline = env.TOOL_SERVERS;
  const file = env.TOOL_SERVERS_FILE;
  if (inline !== undefined && file !== undefined) {
    throw new Error('invalid configuration: set TOOL_SERVERS or TOOL_SERVERS_FILE, not both');
  }
  if (inline !== undefined) return parseToolServers('TOOL_SERVERS', inline);
  if (file !== undefined) return parseToolServers(`TOOL_SERVERS_FILE (${file})`, readConfigFile(file));
  return {};
}

function readConfigFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`invalid configuration: TOOL_SERVERS_FILE: cannot read ${path}: ${(err as Error).message}`);
  }
}

function parseToolServers(source: string, text: string): ToolServersConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`invalid configuration: ${source} is not JSON: ${(err as Error).message}`);
  }
  const parsed = toolServersSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(top level)'}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${source}: ${problems}`);
  }
  return parsed.data;
}
