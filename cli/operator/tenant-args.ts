import { InvalidArgumentError } from 'commander';
import type { ApiRole } from '../../core/authorization';

/** The arguments of the tenant commands, shared by `npm run tenant` and `governed tenants`. */
export const ROLES: ApiRole[] = ['admin', 'member', 'viewer'];

export function parseRole(value: string): ApiRole {
  if (!ROLES.includes(value as ApiRole)) throw new InvalidArgumentError(`role must be one of ${ROLES.join(', ')}`);
  return value as ApiRole;
}

export function parseName(value: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/i.test(value)) {
    throw new InvalidArgumentError('name must be 1-63 letters, digits, dots, dashes or underscores');
  }
  return value;
}
