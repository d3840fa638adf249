export const DRILL_NAMES = ['worker-kill', 'temporal-restart', 'db-outage', 'redis-outage', 'control-flood', 'history-kill'] as const;
export type DrillName = (typeof DRILL_NAMES)[number];
