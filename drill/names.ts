export const DRILL_NAMES = ['worker-kill', 'temporal-restart', 'db-outage', 'redis-outage', 'control-flood', 'history-kill', 'api-kill', 'events-kill', 'cluster-restart'] as const;
export type DrillName = (typeof DRILL_NAMES)[number];
