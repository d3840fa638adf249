import http from 'node:http';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

/**
 * One request exactly as given: the path is not normalised or re-encoded (fetch would fix
 * `%E0%A4%A` or `/../` for us) and the body goes out as raw bytes, whatever its headers claim.
 * Node's client still refuses control characters in the path and header values, as any real
 * client's socket library would.
 */
export function rawRequest(
  baseUrl: string,
  options: {
    method: string;
    path: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    timeoutMs?: number;
    /** A keep-alive agent to reuse connections; by default each request has its own, closed after. */
    agent?: http.Agent;
  },
): Promise<RawResponse> {
  const url = new URL(baseUrl);
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  // Node's client frames a GET's body with no length at all, and the server reads it as a second request.
  const headers = body === undefined ? options.headers : { 'content-length': String(body.length), ...options.headers };
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, method: options.method, path: options.path, headers, agent: options.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.setTimeout(options.timeoutMs ?? 30_000, () => req.destroy(new Error(`no answer to ${options.method} ${options.path}`)));
    req.on('error', reject);
    req.end(body);
  });
}
