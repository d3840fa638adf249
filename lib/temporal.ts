import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { Config } from './config';

type TemporalConfig = Pick<Config, 'TEMPORAL_ADDRESS' | 'TEMPORAL_NAMESPACE' | 'TEMPORAL_API_KEY' | 'TEMPORAL_TLS'>;

/** Local dev server by default; a cluster or Temporal Cloud through TLS and an API key. */
function connectionOptions(config: TemporalConfig) {
  return {
    address: config.TEMPORAL_ADDRESS,
    tls: config.TEMPORAL_TLS === 'true' || Boolean(config.TEMPORAL_API_KEY),
    ...(config.TEMPORAL_API_KEY ? { apiKey: config.TEMPORAL_API_KEY } : {}),
  };
}

export async function connectClient(config: TemporalConfig): Promise<Client> {
  const connection = await Connection.connect(connectionOptions(config));
  return new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
}

/**
 * A client that connects on first use: the API starts, accepts runs and answers `/healthz` while
 * Temporal is down (accepted runs wait for the dispatcher; see dispatch/).
 */
export function lazyClient(config: TemporalConfig): Client {
  return new Client({ connection: Connection.lazy(connectionOptions(config)), namespace: config.TEMPORAL_NAMESPACE });
}

export function connectWorkerConnection(config: TemporalConfig): Promise<NativeConnection> {
  return NativeConnection.connect(connectionOptions(config));
}

/**
 * Each execution of a workflow that continued as new, first to last, with its history's event
 * count: walked back from the latest through the run each one continued.
 */
export async function executionsOf(client: Client, workflowId: string): Promise<{ runId: string; events: number }[]> {
  const executions: { runId: string; events: number }[] = [];
  for (let runId: string | undefined = (await client.workflow.getHandle(workflowId).describe()).runId; runId; ) {
    const history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>> = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const events = history.events ?? [];
    executions.unshift({ runId, events: events.length });
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return executions;
}
