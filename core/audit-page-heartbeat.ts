/**
 * How a reconciler page shows its auditor is alive. A page holds its runs locked in one transaction;
 * when its auditor dies Postgres rolls the page back at once, but Temporal retries it on another
 * auditor only once it declares the attempt lost: after the heartbeat timeout (several beats), not
 * the page's two-minute start-to-close.
 */
export const AUDIT_PAGE_HEARTBEAT_INTERVAL_MS = 3_000;
export const AUDIT_PAGE_HEARTBEAT_TIMEOUT_MS = 5 * AUDIT_PAGE_HEARTBEAT_INTERVAL_MS;
