import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubRequest {
  path: string;
  authorization: string | undefined;
  body: any;
}

/** What a scripted reply says: text, tool calls (by the function names the request offered), or an error status. */
export interface StubReply {
  content?: string | null;
  toolCalls?: { name: string; arguments: string }[];
  /** The usage to report, as sent: a test may send what no provider should (negative, fractional, strings). */
  usage?: { prompt_tokens: unknown; completion_tokens: unknown } | null;
  /** The model the reply says it billed (default: the one requested). */
  model?: string;
  /** Answer with this HTTP status and an error body instead. */
  status?: number;
  /** The error body sent with `status` (default `{"error":{"message":"stub refuses"}}`). */
  errorBody?: string;
}

/** Chat messages as the stub receives them. */
export interface StubMessage {
  role: string;
  content: string | null;
  tool_calls?: { id: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

/**
 * An OpenAI-compatible `/v1/chat/completions` on loopback: the only fake in the suite, standing in
 * for an LLM provider this machine cannot reach. Usage grows with the prompt, so tests can check
 * that what the run recorded is what the provider reported. A test may script the replies (tool
 * calls included) with `reply`, given the request and its number.
 */
export async function startLlmStub(
  options: {
    failWith?: number;
    reply?: (body: { messages: StubMessage[]; tools?: { function: { name: string } }[]; model: string; max_tokens?: number }, n: number, request: StubRequest) => StubReply;
  } = {},
) {
  const requests: StubRequest[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      const body = raw ? JSON.parse(raw) : null;
      const request: StubRequest = { path: req.url ?? '', authorization: req.headers.authorization, body };
      requests.push(request);
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
        return;
      }
      const scripted = options.reply?.(body, requests.length, request);
      const status = scripted?.status ?? options.failWith;
      if (status) {
        res.writeHead(status, { 'content-type': 'application/json' }).end(scripted?.errorBody ?? '{"error":{"message":"stub refuses"}}');
        return;
      }
      const promptChars = (body.messages as StubMessage[]).reduce((n, m) => n + (m.content?.length ?? 0), 0);
      const usage = scripted?.usage === undefined ? { prompt_tokens: 7 + promptChars, completion_tokens: 42 } : scripted.usage;
      const toolCalls = scripted?.toolCalls?.map((c, i) => ({ id: `call_${requests.length}_${i}`, type: 'function', function: c }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: `chatcmpl-${requests.length}`,
          object: 'chat.completion',
          model: scripted?.model ?? body.model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: scripted ? (scripted.content ?? null) : `stub answer ${requests.length}`, ...(toolCalls?.length ? { tool_calls: toolCalls } : {}) },
              finish_reason: toolCalls?.length ? 'tool_calls' : 'stop',
            },
          ],
          ...(usage === null
            ? {}
            : { usage: { ...usage, total_tokens: typeof usage.prompt_tokens === 'number' && typeof usage.completion_tokens === 'number' ? usage.prompt_tokens + usage.completion_tokens : 0 } }),
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
