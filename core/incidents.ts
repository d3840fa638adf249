/** An incident's lifecycle: opened by the system, acknowledged and resolved by people (or by the reconciler). */
export const INCIDENT_STATUSES = ['open', 'acknowledged', 'resolved'] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];
