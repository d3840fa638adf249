import { CliError, EXIT, UsageError } from './exit-codes';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';

/** The API answered, and said no. `body` is what it sent, for `--json`. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown,
  ) {
    super(`${message} (HTTP ${status})`, EXIT.FAILED);
  }
}

/** Nothing answered at the API's address. */
export class UnreachableError extends CliError {
  constructor(url: string, cause: string) {
    super(`cannot reach the API at ${url}: ${cause} (set GOVERNED_API_URL or --api-url, or 'governed config set api-url')`, EXIT.UNREACHABLE);
  }
}

export interface ApiClientOptions {
  baseUrl: string;
  apiKey?: string;
  timeoutMs?: number;
}

type Query = Record<string, string | number | undefined>;

/** The HTTP API as the CLI needs it: JSON in, JSON out, every failure a CliError. */
export class ApiClient {
  readonly baseUrl: string;
  private readonly apiKey?: string;
  private readonly timeoutMs: number;

  constructor(options: ApiClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  get<T = any>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query });
  }

  post<T = any>(path: string, body: unknown = {}, headers?: Record<string, string>): Promise<T> {
    return this.request<T>('POST', path, { body, headers });
  }

  put<T = any>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, { body });
  }

  async request<T>(method: string, path: string, options: { body?: unknown; query?: Query; headers?: Record<string, string> } = {}): Promise<T> {
    const { status, text } = await this.send(method, path, options);
    const body = jsonOrUndefined(text);
    if (body === undefined) throw new ApiError(status, `the API answered something that is not JSON: ${text.slice(0, 200)}`, text);
    return body as T;
  }

  /** A GET whose answer is text of its own format (JSONL evidence), passed on as it came. */
  async getText(path: string): Promise<string> {
    return (await this.send('GET', path, {})).text;
  }

  private async send(method: string, path: string, options: { body?: unknown; query?: Query; headers?: Record<string, string> }): Promise<{ status: number; text: string }> {
    // Asked before anything is sent: a missing key is the caller's mistake, not the API's answer.
    if (!this.apiKey) throw new UsageError("no API key: set GOVERNED_API_KEY or pass --api-key (or store one: 'governed config set api-key')");
    const url = new URL(`${this.baseUrl}/api/v1${path}`);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...options.headers,
        },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new UnreachableError(this.baseUrl, networkCause(err, this.timeoutMs));
    }
    const text = await response.text();
    const body = jsonOrUndefined(text);
    if (!response.ok) {
      const said = body !== undefined && typeof body === 'object' && body !== null && 'error' in body ? String(body.error) : text.trim().slice(0, 300) || response.statusText;
      throw new ApiError(response.status, said, body ?? text);
    }
    return { status: response.status, text };
  }
}

function jsonOrUndefined(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return undefined;
  }
}

/** fetch hides the reason in `cause` (ECONNREFUSED, ENOTFOUND…); a timeout is an abort. */
function networkCause(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${timeoutMs / 1000}s`;
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}
