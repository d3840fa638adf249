import { createHmac, timingSafeEqual } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { Redactor } from '../core/redaction';
import { environmentRedactor } from '../lib/secrets';

/** What the webhook receives: the alert as JSON; `id` is stable across retries and redeliveries. */
export type WebhookPayload = { id: string } & Record<string, unknown>;

export interface WebhookSink {
  /** Resolves once the receiver answered 2xx; throws after the last failed attempt. */
  deliver(alert: WebhookPayload): Promise<void>;
}

export interface WebhookSinkOptions {
  url: string;
  secret: string;
  attempts?: number;
  /** Delay before the second attempt; doubles for each one after. */
  backoffMs?: number;
  /** Per attempt. */
  timeoutMs?: number;
  fetch?: typeof globalThis.fetch;
  /**
   * What each body is redacted with before it is signed and sent; default: the process's secrets
   * (`lib/secrets.ts`) and `secret`, and every credential shape (`core/redaction.ts`).
   */
  redactor?: Redactor;
}

/**
 * Each delivery is also signed as Standard Webhooks specify (`webhook-id`, `webhook-timestamp`,
 * `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`), so a receiver can verify it
 * with a library of its own (`new Webhook(secret, { format: 'raw' }).verify(body, headers)` with
 * the `standardwebhooks` package); the `x-governed-*` headers stay for receivers written before.
 */
export const STANDARD_WEBHOOK_HEADERS = { id: 'webhook-id', timestamp: 'webhook-timestamp', signature: 'webhook-signature' } as const;

export const WEBHOOK_HEADERS = {
  alertId: 'x-governed-alert-id',
  timestamp: 'x-governed-timestamp',
  signature: 'x-governed-signature',
} as const;

export class WebhookDeliveryError extends Error {
  override readonly name = 'WebhookDeliveryError';
  constructor(
    message: string,
    readonly attempts: number,
    /** The last HTTP status, when the receiver answered at all. */
    readonly status: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** `sha256=<hex>` of HMAC-SHA256(secret, `${timestamp}.${body}`): the timestamp is signed so a captured request cannot be replayed later. */
export function signWebhookBody(secret: string, timestamp: number | string, body: string | Buffer): string {
  const hmac = createHmac('sha256', secret);
  hmac.update(`${timestamp}.`);
  hmac.update(body);
  return `sha256=${hmac.digest('hex')}`;
}

type HeaderSource = Headers | Record<string, string | string[] | undefined>;

function header(headers: HeaderSource, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const value = headers[name] ?? Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * For receivers: true when the signature matches the body and the timestamp is within
 * `toleranceSeconds` of now. `body` must be the raw bytes received, not re-serialized JSON.
 */
export function verifyWebhookSignature(
  secret: string,
  headers: HeaderSource,
  body: string | Buffer,
  toleranceSeconds = 300,
  nowMs = Date.now(),
): boolean {
  const timestamp = header(headers, WEBHOOK_HEADERS.timestamp);
  const signature = header(headers, WEBHOOK_HEADERS.signature);
  if (!timestamp || !signature || !/^\d+$/.test(timestamp)) return false;
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhookBody(secret, timestamp, body));
  const received = Buffer.from(signature);
  // timingSafeEqual throws on a length mismatch; the length of a valid signature is no secret.
  return expected.length === received.length && timingSafeEqual(expected, received);
}

function describeFailure(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // fetch reports "fetch failed" and keeps the socket error (ECONNREFUSED, …) in `cause`.
  const cause = err.cause instanceof Error ? `: ${(err.cause as Error & { code?: string }).code ?? err.cause.message}` : '';
  return `${err.name === 'TimeoutError' ? 'timed out' : err.message}${cause}`;
}

/** A signed JSON POST per alert, retried with exponential backoff on non-2xx answers and network errors. */
export function createWebhookSink(options: WebhookSinkOptions): WebhookSink {
  const { url, secret } = options;
  // Webhook URLs often carry their credential in the path or query; errors name only the origin.
  const where = new URL(url).origin;
  const attempts = Math.max(1, options.attempts ?? 4);
  const backoffMs = options.backoffMs ?? 200;
  const timeoutMs = options.timeoutMs ?? 5000;
  const fetchFn = options.fetch ?? globalThis.fetch;
  const redactor = options.redactor ?? environmentRedactor([secret]);
  // The operator's secret is used as it is (any 16+ characters), not as the base64 a whsec_ key is.
  const standard = new Webhook(secret, { format: 'raw' });

  async function attempt(alertId: string, body: string): Promise<{ ok: true } | { ok: false; failure: string; status?: number; cause?: unknown }> {
    // Signed per attempt: a retry after a long backoff must not arrive with a stale timestamp.
    const timestamp = Math.floor(Date.now() / 1000);
    try {
      const response = await fetchFn(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [WEBHOOK_HEADERS.alertId]: alertId,
          [WEBHOOK_HEADERS.timestamp]: String(timestamp),
          [WEBHOOK_HEADERS.signature]: signWebhookBody(secret, timestamp, body),
          [STANDARD_WEBHOOK_HEADERS.id]: alertId,
          [STANDARD_WEBHOOK_HEADERS.timestamp]: String(timestamp),
          [STANDARD_WEBHOOK_HEADERS.signature]: standard.sign(alertId, new Date(timestamp * 1000), body),
        },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      // Read the body either way, so the connection goes back to the pool.
      const text = await response.text().catch(() => '');
      if (response.ok) return { ok: true };
      return { ok: false, status: response.status, failure: `HTTP ${response.status}${text ? ` ${text.slice(0, 200)}` : ''}` };
    } catch (err) {
      return { ok: false, failure: describeFailure(err), cause: err };
    }
  }

  return {
    async deliver(alert) {
      // An alert quotes what runs recorded (already redacted at the source); nothing the process
      // holds as a secret, nor anything shaped like a credential, leaves in a webhook all the same.
      const body = redactor.credentials(JSON.stringify(alert));
      let last: { failure: string; status?: number; cause?: unknown } = { failure: 'not attempted' };
      for (let n = 1; n <= attempts; n++) {
        if (n > 1) await new Promise((resolve) => setTimeout(resolve, backoffMs * 2 ** (n - 2)));
        const result = await attempt(alert.id, body);
        if (result.ok) return;
        last = result;
      }
      throw new WebhookDeliveryError(`webhook ${where} refused alert ${alert.id} after ${attempts} attempt(s): ${last.failure}`, attempts, last.status, {
        cause: last.cause,
      });
    },
  };
}
