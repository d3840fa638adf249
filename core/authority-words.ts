import { RESUME_AUTHORITIES, type ResumeAuthority } from './policy-check';

/**
 * The resume authorities (`RESUME_AUTHORITIES`) are the run's internal names for who may lift a
 * pause. A tenant never sees them: answers, errors and alerts say who in words a tenant knows.
 * FOUNDER_ONLY in particular is the operator of the service, not anyone in the tenant.
 */
const WORDS: Readonly<Record<ResumeAuthority, string>> = {
  TENANT_ADMIN: 'an admin key',
  TENANT_USER: 'a member key',
  API_KEY_OWNER: 'the key that submitted the run',
  SYSTEM_AUTO: 'the service itself',
  FOUNDER_ONLY: 'the service operator',
};

/** One authority in a tenant's words; a value that is not an authority is passed through. */
export function authorityInWords(authority: string): string {
  return (WORDS as Record<string, string>)[authority] ?? authority;
}

/** Several, each once, in the order given: `['TENANT_ADMIN', 'FOUNDER_ONLY']` → `['an admin key', 'the service operator']`. */
export function authoritiesInWords(authorities: readonly string[]): string[] {
  return [...new Set(authorities.map(authorityInWords))];
}

/** `a, b or c`. */
export function orList(words: readonly string[]): string {
  return words.length <= 1 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}

const AUTHORITY_NAME = new RegExp(`\\b(${RESUME_AUTHORITIES.join('|')})\\b`, 'g');

/** A sentence with every authority name in it replaced by its words: for text the run wrote, on its way to a tenant. */
export function withAuthoritiesInWords(text: string): string {
  return text.replace(AUTHORITY_NAME, (name) => authorityInWords(name));
}

type WithPause = { pause?: { allowedAuthorities: readonly string[] } | null };
type TenantPause<S extends WithPause> = (Omit<NonNullable<S['pause']>, 'allowedAuthorities'> & { resumableBy: string[] }) | null;
/** A state as `stateForTenant` shows it. */
export type ForTenant<S extends WithPause> = Omit<S, 'pause'> & { pause?: TenantPause<S> };

/**
 * A run's live state as a tenant is shown it: its pause says who may lift it in words
 * (`resumableBy`), never by the internal authority names (`allowedAuthorities`).
 */
export function stateForTenant<S extends WithPause>(state: S): ForTenant<S> {
  const { pause } = state;
  if (!pause) return state as unknown as ForTenant<S>;
  const { allowedAuthorities, ...rest } = pause;
  return { ...state, pause: { ...rest, resumableBy: authoritiesInWords(allowedAuthorities) } } as unknown as ForTenant<S>;
}
