import { createHash } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CallToolResultSchema,
  ErrorCode,
  McpError,
  type CallToolResult,
  type ContentBlock,
  type Tool,
  type ToolAnnotations,
} from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv-provider.js';
import type { JsonSchemaType, JsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/types.js';
import { splitToolId, toolIdOf, TOOL_PATTERN, type ToolId } from '../../core/tools';
import type { Logger } from '../../lib/logger';
import type { ToolServerConfig, ToolServersConfig } from './config';

/**
 * The worker's registry of the operator's MCP tool servers: what tools they offer, and calling
 * them so that the caller can tell an answer from a call whose outcome is unknown.
 */

export interface ToolInfo {
  id: ToolId;
  server: string;
  name: string;
  description: string;
  inputSchema: Tool['inputSchema'];
  annotations: ToolAnnotations | undefined;
  /** The server says running it twice does no harm (read-only or idempotent); absent hints say nothing. */
  retrySafe: boolean;
  /** The name offered to an OpenAI-compatible model, which allows no dot. */
  functionName: string;
}

export type ToolCallOutcome =
  /** The server answered; `isError` when the tool itself reported a failure. */
  | { kind: 'result'; isError: boolean; text: string; structured?: unknown }
  /**
   * The server answered with a JSON-RPC error instead of a result: it rejected the request (bad
   * params, unknown method), or the registry itself refused (no such tool), and nothing ran.
   * Servers built on the SDK's McpServer report an unknown tool or bad arguments as `isError` results.
   */
  | { kind: 'refused'; error: string };

/** The call's outcome is unknown: the request may have reached the server (`sentRequest`) and run. */
export class ToolCallLostError extends Error {
  constructor(
    message: string,
    readonly sentRequest: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ToolCallLostError';
  }
}

export interface ToolServersOptions {
  logger: Logger;
  clientName?: string;
  /** A server that is down is tried again at most this often, when its tools are asked for. */
  retryIntervalMs?: number;
}

/** npx-launched servers may install themselves on first start; longer than that is a hung server. */
const CONNECT_TIMEOUT_MS = 30_000;
/** A server that keeps answering with a cursor is cut off rather than listed forever. */
const MAX_TOOL_PAGES = 100;
const DEFAULT_RETRY_INTERVAL_MS = 30_000;
const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export class ToolServers {
  private byId = new Map<ToolId, ToolInfo>();
  private byFunction = new Map<string, ToolInfo>();
  /** Keyed by the listed schema object, so a relisted tool compiles its new schema once. */
  private readonly validators = new WeakMap<object, JsonSchemaValidator<unknown> | null>();
  private readonly ajv = new AjvJsonSchemaValidator();

  private constructor(
    private readonly links: Map<string, ServerLink>,
    private readonly logger: Logger,
  ) {}

  /** Connects every server; one that is down is logged and left for a later retry, never fatal. */
  static async connect(config: ToolServersConfig, options: ToolServersOptions): Promise<ToolServers> {
    const links = new Map<string, ServerLink>();
    const registry = new ToolServers(links, options.logger);
    for (const [name, serverConfig] of Object.entries(config)) {
      links.set(name, new ServerLink(name, serverConfig, options, () => registry.reindex()));
    }
    await Promise.all([...links.values()].map((link) => link.connection()));
    return registry;
  }

  /** Every tool listed so far; servers that are down are retried in the background. */
  tools(): ToolInfo[] {
    for (const link of this.links.values()) void link.connection();
    return [...this.byId.values()];
  }

  /** Waits for the retries `tools()` would start, for a caller that wants the fullest list now. */
  async refresh(): Promise<void> {
    await Promise.all([...this.links.values()].map((link) => link.connection()));
  }

  get(id: ToolId): ToolInfo | undefined {
    return this.byId.get(id);
  }

  byFunctionName(name: string): ToolInfo | undefined {
    return this.byFunction.get(name);
  }

  validateArguments(id: ToolId, args: unknown): { ok: true } | { ok: false; error: string } {
    const tool = this.byId.get(id);
    if (!tool) return { ok: false, error: `there is no tool ${id}` };
    if (typeof args !== 'object' || args === null || Array.isArray(args)) return { ok: false, error: 'arguments must be a JSON object' };
    const result = this.validatorFor(tool)?.(args);
    if (!result || result.valid) return { ok: true };
    // AJV calls the value `data`; the model knows it as its arguments.
    return { ok: false, error: result.errorMessage.replace(/(^|, )data(?=[/ ])/g, '$1arguments') };
  }

  async call(id: ToolId, args: Record<string, unknown>, options: { signal?: AbortSignal } = {}): Promise<ToolCallOutcome> {
    const parts = splitToolId(id);
    const link = parts && this.links.get(parts.server);
    if (!parts || !link) return { kind: 'refused', error: `there is no tool server for ${id}` };
    const client = await link.connection();
    if (!client) throw new ToolCallLostError(`tool server ${link.name} is unavailable: ${link.describeFailure()}`, false);
    if (!this.byId.has(id)) return { kind: 'refused', error: `tool server ${link.name} lists no tool ${parts.tool}` };
    if (options.signal?.aborted) throw new ToolCallLostError(`call to ${id} cancelled before it was sent`, false);
    try {
      const result = await client.request(
        { method: 'tools/call', params: { name: parts.tool, arguments: args } },
        // Not `client.callTool`: it checks the output against the tool's schema after the tool
        // ran, and throws an McpError that would read as if the server had refused.
        CallToolResultSchema,
        { timeout: link.config.timeoutMs, signal: options.signal },
      );
      return toOutcome(result);
    } catch (error) {
      if (isServerAnswer(error, options.signal)) return { kind: 'refused', error: error.message };
      if (!isTimeout(error)) link.drop(client);
      throw new ToolCallLostError(`call to ${id} lost: ${errorText(error)}${link.stderrSuffix()}`, mayHaveBeenSent(error), { cause: error });
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.links.values()].map((link) => link.close()));
  }

  private validatorFor(tool: ToolInfo): JsonSchemaValidator<unknown> | null {
    let validate = this.validators.get(tool.inputSchema);
    if (validate === undefined) {
      try {
        validate = this.ajv.getValidator<unknown>(tool.inputSchema as JsonSchemaType);
      } catch (err) {
        // The server still checks its own input; refusing here would make the tool unusable.
        this.logger.warn({ tool: tool.id, err }, 'tool input schema does not compile; arguments go to the server unchecked');
        validate = null;
      }
      this.validators.set(tool.inputSchema, validate);
    }
    return validate;
  }

  private reindex(): void {
    const listed = [...this.links.values()].flatMap((link) => link.tools.map((tool) => ({ server: link.name, tool })));
    const names = functionNames(listed.map(({ server, tool }) => toolIdOf(server, tool.name)));
    const byId = new Map<ToolId, ToolInfo>();
    const byFunction = new Map<string, ToolInfo>();
    for (const { server, tool } of listed) {
      const info = toolInfo(server, tool, names.get(toolIdOf(server, tool.name))!);
      // Only two hashes of distinct ids agreeing could get here; a wrong mapping would be worse.
      if (byFunction.has(info.functionName)) {
        this.logger.warn({ tool: info.id, functionName: info.functionName }, 'tool left out: its function name is taken');
        continue;
      }
      byId.set(info.id, info);
      byFunction.set(info.functionName, info);
    }
    this.byId = byId;
    this.byFunction = byFunction;
  }
}

/**
 * One configured server: its live client when up, the tools it last listed (kept while it is
 * down, so a call can bring it back), and when it may be tried again.
 */
class ServerLink {
  private listed: Tool[] = [];
  private client: Client | undefined;
  private connecting: Promise<Client | undefined> | undefined;
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private lastFailure = 'not connected yet';
  private closed = false;
  private readonly stderr = new OutputTail();
  private readonly logger: Logger;

  constructor(
    readonly name: string,
    readonly config: ToolServerConfig,
    private readonly options: ToolServersOptions,
    private readonly onToolsListed: () => void,
  ) {
    this.logger = options.logger.child({ toolServer: name });
  }

  get tools(): readonly Tool[] {
    return this.listed;
  }

  /** The live client; a server that is down is reconnected first when its retry interval has passed. */
  async connection(): Promise<Client | undefined> {
    if (this.client || this.closed) return this.client;
    const retryIntervalMs = this.options.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS;
    if (!this.connecting && Date.now() - this.lastAttemptAt >= retryIntervalMs) {
      this.connecting = this.reconnect().finally(() => (this.connecting = undefined));
    }
    return this.connecting;
  }

  /** Forgets a client whose transport failed, so the next call starts a new connection (and session). */
  drop(client: Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.close().catch(() => {});
  }

  describeFailure(): string {
    return `${this.lastFailure}${this.stderrSuffix()}`;
  }

  stderrSuffix(): string {
    const tail = this.stderr.text();
    return tail ? ` (server stderr: ${tail})` : '';
  }

  async close(): Promise<void> {
    this.closed = true;
    this.lastFailure = 'the registry is closed';
    await this.connecting;
    const client = this.client;
    this.client = undefined;
    await client?.close();
  }

  private async reconnect(): Promise<Client | undefined> {
    this.lastAttemptAt = Date.now();
    // No capabilities: a server may not ask the worker to sample, elicit or list roots (the
    // filesystem server would take roots over the folders the operator gave it).
    const client = new Client({ name: this.options.clientName ?? 'governed-runs-worker', version: '1.0.0' });
    // The SDK calls onclose when a stdio server's process exits; the call that was in flight fails on its own.
    client.onclose = () => this.onClosed(client);
    client.onerror = (err) => this.logger.debug({ err }, 'tool server transport error');
    try {
      await client.connect(this.transport(), { timeout: CONNECT_TIMEOUT_MS });
      this.listed = this.policyNamable(await this.listTools(client));
    } catch (err) {
      await client.close().catch(() => {});
      this.lastFailure = errorText(err);
      this.logger.warn({ err, stderr: this.stderr.text() || undefined }, 'tool server unreachable; retried when its tools are next needed');
      return undefined;
    }
    if (this.closed) {
      await client.close().catch(() => {});
      return undefined;
    }
    this.client = client;
    this.logger.info({ tools: this.tools.length }, 'tool server connected');
    this.onToolsListed();
    return client;
  }

  private onClosed(client: Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.lastFailure = 'connection closed';
    this.logger.warn({ stderr: this.stderr.text() || undefined }, 'tool server connection closed; reconnected when next needed');
  }

  private transport(): StdioClientTransport | StreamableHTTPClientTransport {
    if ('url' in this.config) {
      const { url, headers } = this.config;
      return new StreamableHTTPClientTransport(new URL(url), headers ? { requestInit: { headers } } : undefined);
    }
    const { command, args, env, cwd } = this.config;
    // Piped rather than inherited: a chatty server must not fill the worker's log; its last
    // lines explain a failure instead.
    const transport = new StdioClientTransport({ command, args, env, cwd, stderr: 'pipe' });
    transport.stderr?.on('data', (chunk: Buffer) => this.stderr.append(chunk.toString('utf8')));
    return transport;
  }

  private async listTools(client: Client): Promise<Tool[]> {
    const tools: Tool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_TOOL_PAGES; page++) {
      const listed = await client.listTools(cursor === undefined ? {} : { cursor }, { timeout: CONNECT_TIMEOUT_MS });
      tools.push(...listed.tools);
      cursor = listed.nextCursor;
      if (cursor === undefined) return tools;
    }
    this.logger.warn({ pages: MAX_TOOL_PAGES }, 'tool list cut off: the server kept answering with a cursor');
    return tools;
  }

  /** A policy names tools as `server.tool`; a tool whose name no pattern can hold is left out. */
  private policyNamable(tools: Tool[]): Tool[] {
    return tools.filter((tool) => {
      const id = toolIdOf(this.name, tool.name);
      const namable = TOOL_PATTERN.test(id) && !tool.name.includes('*');
      if (!namable) this.logger.warn({ tool: tool.name }, 'tool left out: a policy cannot name it');
      return namable;
    });
  }
}

function toolInfo(server: string, tool: Tool, functionName: string): ToolInfo {
  return {
    id: toolIdOf(server, tool.name),
    server,
    name: tool.name,
    description: tool.description ?? '',
    inputSchema: tool.inputSchema,
    annotations: tool.annotations,
    retrySafe: tool.annotations?.readOnlyHint === true || tool.annotations?.idempotentHint === true,
    functionName,
  };
}

/**
 * `server__tool` where that is a valid function name and no other tool's is the same; otherwise
 * the name made valid and shortened, with a hash of the tool id, so names stay stable per id.
 */
export function functionNames(ids: readonly ToolId[]): Map<ToolId, string> {
  const plain = new Map(ids.map((id) => [id, id.replace('.', '__')]));
  const uses = new Map<string, number>();
  for (const name of plain.values()) uses.set(name, (uses.get(name) ?? 0) + 1);
  return new Map(
    ids.map((id) => {
      const name = plain.get(id)!;
      return [id, FUNCTION_NAME.test(name) && uses.get(name) === 1 ? name : hashedFunctionName(id, name)];
    }),
  );
}

function hashedFunctionName(id: ToolId, plain: string): string {
  const suffix = `_${createHash('sha256').update(id).digest('hex').slice(0, 8)}`;
  return plain.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64 - suffix.length) + suffix;
}

function toOutcome(result: CallToolResult): ToolCallOutcome {
  return {
    kind: 'result',
    isError: result.isError === true,
    text: result.content.map(renderContent).join('\n'),
    ...(result.structuredContent !== undefined ? { structured: result.structuredContent } : {}),
  };
}

/** A model reads text; anything else is named briefly so it knows what it got. */
function renderContent(block: ContentBlock): string {
  switch (block.type) {
    case 'text':
      return block.text;
    case 'image':
    case 'audio':
      return `[${block.type} ${block.mimeType}, ${block.data.length} bytes base64]`;
    case 'resource_link':
      return `[resource ${block.uri}]`;
    case 'resource':
      return 'text' in block.resource
        ? `[resource ${block.resource.uri}]\n${block.resource.text}`
        : `[resource ${block.resource.uri}, ${block.resource.mimeType ?? 'binary'}, ${block.resource.blob.length} bytes base64]`;
    default:
      // A content type newer than this SDK.
      return `[${(block as { type: string }).type} content]`;
  }
}

/**
 * The SDK (1.x) raises its own failures as McpError too: ConnectionClosed when the transport
 * closes, RequestTimeout on its timeout or the caller's abort. Those codes, and anything after an
 * abort, count as lost; a server that itself answers with them is taken as lost too, which errs
 * on the side that never claims a call did not run.
 */
function isServerAnswer(error: unknown, signal: AbortSignal | undefined): error is McpError {
  return error instanceof McpError && error.code !== ErrorCode.ConnectionClosed && !isTimeout(error) && !signal?.aborted;
}

function isTimeout(error: unknown): boolean {
  return error instanceof McpError && error.code === ErrorCode.RequestTimeout;
}

/** Only a refused TCP connection proves the request never left; anything else may have arrived. */
function mayHaveBeenSent(error: unknown): boolean {
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ECONNREFUSED') return false;
  }
  return true;
}

function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}

/** The last lines a server wrote to stderr, for error messages. */
class OutputTail {
  private buffer = '';

  constructor(private readonly maxChars = 2000) {}

  append(chunk: string): void {
    this.buffer = (this.buffer + chunk).slice(-this.maxChars);
  }

  text(): string {
    return this.buffer.trim().split('\n').slice(-10).join('\n');
  }
}
