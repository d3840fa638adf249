import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubRequest {
  path: string;
  authorization: string | undefined;
  body: any;
}

/**
 * An OpenAI-compatible `/v1/chat/completions` on loopback: the only fake in the suite, standing in
 * for an LLM provider this machine cannot reach. Usage grows with the prompt, so tests can check
 * that what the run recorded is what the provider reported.
 */
export async function startLlmStub(options: { failWith?: number } = {}) {
  const requests: StubRequest[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      const body = raw ? JSON.parse(raw) : null;
      requests.push({ path: req.url ?? '', authorization: req.headers.authorization, body });
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
        return;
      }
      if (options.failWith) {
        res.writeHead(options.failWith, { 'content-type': 'application/json' }).end('{"error":{"message":"stub refuses"}}');
        return;
      }
      const promptChars = (body.messages as { content: string }[]).reduce((n, m) => n + m.content.length, 0);
      const usage = { prompt_tokens: 7 + promptChars, completion_tokens: 42, total_tokens: 49 + promptChars };
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: `chatcmpl-${requests.length}`,
          object: 'chat.completion',
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: `stub answer ${requests.length}` }, finish_reason: 'stop' }],
          usage,
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
