export { runWorkflow } from './run';
export { reconcileAuditWorkflow, staleRunReportWorkflow } from './audit';
