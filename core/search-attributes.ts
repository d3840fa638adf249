import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Registered on the server by temporal-dev.sh; the Web UI filters runs by these. */
export const RUN_PHASE = defineSearchAttributeKey('RunPhase', SearchAttributeType.KEYWORD);
export const RUN_STATUS = defineSearchAttributeKey('RunStatus', SearchAttributeType.KEYWORD);
export const TENANT_ID = defineSearchAttributeKey('TenantId', SearchAttributeType.KEYWORD);
export const PAUSE_REASON = defineSearchAttributeKey('PauseReason', SearchAttributeType.KEYWORD);

export const RUN_SEARCH_ATTRIBUTES = [RUN_PHASE, RUN_STATUS, TENANT_ID, PAUSE_REASON] as const;
