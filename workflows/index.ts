export { runWorkflow } from './run';
export { reconcileAuditWorkflow, staleRunReportWorkflow } from './audit';
export { pruneRetentionWorkflow } from './retention';
