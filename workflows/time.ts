/**
 * Workflow time in ms. Inside the workflow sandbox the SDK replaces `Date` with the time of the
 * current activation, so this is deterministic on replay; it is the one sanctioned use.
 */
export function workflowNow(): number {
  // eslint-disable-next-line no-restricted-properties
  return Date.now();
}
