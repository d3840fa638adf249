import { createServer } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { createWebhookSink, signWebhookBody, verifyWebhookSignature, WebhookDeliveryError } from '../../events/webhook';

const SECRET = 's3cret';
const BODY = JSON.stringify({ id: 'a1', title: 'Run failed' });

function signedHeaders(timestamp: number, body = BODY, secret = SECRET): Record<string, string> {
  return { 'x-governed-timestamp': String(timestamp), 'x-governed-signature': signWebhookBody(secret, timestamp, body) };
}

describe('webhook signatures', () => {
  const now = Date.UTC(2030, 0, 1);
  const ts = now / 1000;

  it('signs `${timestamp}.${body}` with HMAC-SHA256', () => {
    // echo -n '1893456000.{"id":"a1","title":"Run failed"}' | openssl dgst -sha256 -hmac s3cret
    expect(signWebhookBody(SECRET, ts, BODY)).toBe('sha256=31b19d0221c283d91097ecedbdca4fe9020db67e42d5c7052935ab49768f7a17');
    expect(signWebhookBody(SECRET, ts, BODY)).toBe(signWebhookBody(SECRET, String(ts), Buffer.from(BODY)));
  });

  it('accepts a fresh signature, from plain headers or a Headers object', () => {
    expect(verifyWebhookSignature(SECRET, signedHeaders(ts), BODY, 300, now)).toBe(true);
    expect(verifyWebhookSignature(SECRET, new Headers(signedHeaders(ts)), Buffer.from(BODY), 300, now)).toBe(true);
  });

  it('rejects a changed body, another secret, a stale or future timestamp and missing headers', () => {
    expect(verifyWebhookSignature(SECRET, signedHeaders(ts), BODY.replace('failed', 'passed'), 300, now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, signedHeaders(ts, BODY, 'other'), BODY, 300, now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, signedHeaders(ts - 301), BODY, 300, now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, signedHeaders(ts + 301), BODY, 300, now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, { 'x-governed-timestamp': String(ts) }, BODY, 300, now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, { ...signedHeaders(ts), 'x-governed-signature': 'sha256=00' }, BODY, 300, now)).toBe(false);
  });
});

describe('webhook sink', () => {
  it('posts signed JSON with the alert id and retries non-2xx answers', async () => {
    const requests: { headers: Headers; body: string }[] = [];
    const answers = [503, 200];
    const sink = createWebhookSink({
      url: 'http://receiver.invalid/hook?token=hidden',
      secret: SECRET,
      backoffMs: 1,
      fetch: async (_url, init) => {
        requests.push({ headers: new Headers(init?.headers), body: String(init?.body) });
        return new Response('', { status: answers.shift() ?? 500 });
      },
    });

    await sink.deliver({ id: 'alert-1', title: 'x' });

    expect(requests).toHaveLength(2);
    for (const { headers, body } of requests) {
      expect(headers.get('content-type')).toBe('application/json');
      expect(headers.get('x-governed-alert-id')).toBe('alert-1');
      expect(verifyWebhookSignature(SECRET, headers, body)).toBe(true);
      expect(JSON.parse(body)).toEqual({ id: 'alert-1', title: 'x' });
    }
  });

  it('signs each delivery as Standard Webhooks specify, so a receiver verifies it with the standardwebhooks library', async () => {
    const requests: { headers: Headers; body: string }[] = [];
    const sink = createWebhookSink({
      url: 'http://receiver.invalid/hook',
      secret: 'a-secret-of-16-chars-or-more',
      backoffMs: 1,
      fetch: async (_url, init) => {
        requests.push({ headers: new Headers(init?.headers), body: String(init?.body) });
        return new Response('', { status: requests.length === 1 ? 500 : 200 });
      },
    });
    await sink.deliver({ id: 'alert-7', title: 'Run failed' });

    const receiver = new Webhook('a-secret-of-16-chars-or-more', { format: 'raw' });
    for (const { headers, body } of requests) {
      // The id is the alert's on every attempt: a receiver drops a redelivery by it.
      expect(headers.get('webhook-id')).toBe('alert-7');
      expect(headers.get('webhook-signature')).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
      expect(receiver.verify(body, Object.fromEntries(headers))).toEqual({ id: 'alert-7', title: 'Run failed' });
      expect(() => receiver.verify(body.replace('failed', 'passed'), Object.fromEntries(headers))).toThrow();
      expect(() => new Webhook('another-secret-of-16-chars', { format: 'raw' }).verify(body, Object.fromEntries(headers))).toThrow();
    }
  });

  it('names the last status after the last attempt, and not the url\'s credentials', async () => {
    let calls = 0;
    const sink = createWebhookSink({
      url: 'http://receiver.invalid/hook?token=hidden',
      secret: SECRET,
      attempts: 3,
      backoffMs: 1,
      fetch: async () => {
        calls++;
        return new Response('down', { status: 502 });
      },
    });

    const error = await sink.deliver({ id: 'alert-2' }).catch((err: unknown) => err);

    expect(calls).toBe(3);
    expect(error).toBeInstanceOf(WebhookDeliveryError);
    expect((error as WebhookDeliveryError).status).toBe(502);
    expect((error as Error).message).toMatch(/after 3 attempt\(s\): HTTP 502 down/);
    expect((error as Error).message).not.toContain('hidden');
  });

  it('names the network cause when nothing listens', async () => {
    // A port that was free a moment ago: connecting to it is refused.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const sink = createWebhookSink({ url: `http://127.0.0.1:${port}/`, secret: SECRET, attempts: 2, backoffMs: 1 });

    await expect(sink.deliver({ id: 'alert-3' })).rejects.toThrow(/after 2 attempt\(s\): fetch failed: ECONNREFUSED/);
  });
});
