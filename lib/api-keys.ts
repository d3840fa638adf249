import { createHash, randomBytes } from 'node:crypto';

const KEY_PREFIX = 'gr_';

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(24).toString('base64url');
}

/** Keys are high-entropy random strings, so a plain sha256 is enough to store them. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}
