// Types of scripts/preflight.mjs, for the tests that import it (test/unit/preflight.test.ts).
export declare const DEFAULTS: { DATABASE_URL: string; REDIS_URL: string; API_HOST: string; API_PORT: string };
export declare const WITHOUT: { postgres: string[]; redis: string[] };
export type Endpoint = { host: string; port: number; label: string } | { path: string; label: string };
export declare function apiUrl(env?: NodeJS.ProcessEnv): string;
export declare function shown(raw: string): string;
export declare function endpointOf(raw: string, defaultPort: number): Endpoint | null;
export declare function probe(endpoint: Endpoint, timeoutMs?: number): Promise<string | null>;
export declare function checkDeps(env?: NodeJS.ProcessEnv): Promise<{ fatal: boolean; lines: string[] }>;
export declare function healthLines(body: Record<string, unknown>, env?: NodeJS.ProcessEnv): string[];
