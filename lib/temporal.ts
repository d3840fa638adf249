import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client, Connection, type ConnectionOptions, type TLSConfig, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { ConfigError, type Config } from './config';
import { PortInUseError } from './listen';

type TemporalConfig = Pick<
  Config,
  | 'TEMPORAL_ADDRESS'
  | 'TEMPORAL_NAMESPACE'
  | 'TEMPORAL_API_KEY'
  | 'TEMPORAL_TLS'
  | 'TEMPORAL_TLS_CLIENT_CERT_PATH'
  | 'TEMPORAL_TLS_CLIENT_CERT_DATA'
  | 'TEMPORAL_TLS_CLIENT_KEY_PATH'
  | 'TEMPORAL_TLS_CLIENT_KEY_DATA'
  | 'TEMPORAL_TLS_SERVER_CA_CERT_PATH'
  | 'TEMPORAL_TLS_SERVER_CA_CERT_DATA'
  | 'TEMPORAL_TLS_SERVER_NAME'
>;

/** How a process reaches Temporal, checked: built once at start so that a bad setting stops it there. */
export interface TemporalConnectionSettings {
  address: string;
  namespace: string;
  tls: TLSConfig | false;
  apiKey?: string;
  /** How it authenticates, in words, for logs and for the message when the server cannot be reached. */
  describe: string;
}

/** A PEM given as a file (`<name>_PATH`) or inline (`<name>_DATA`); never both. */
function pemSetting(config: TemporalConfig, name: 'TEMPORAL_TLS_CLIENT_CERT' | 'TEMPORAL_TLS_CLIENT_KEY' | 'TEMPORAL_TLS_SERVER_CA_CERT'): { text: string; from: string } | null {
  const pathVariable = `${name}_PATH` as const;
  const dataVariable = `${name}_DATA` as const;
  const file = config[pathVariable];
  const data = config[dataVariable];
  if (file && data) throw new ConfigError(`invalid configuration: set ${pathVariable} or ${dataVariable}, not both`);
  if (data) return { text: data, from: dataVariable };
  if (!file) return null;
  try {
    return { text: readFileSync(file, 'utf8'), from: `${pathVariable} (${file})` };
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${pathVariable}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function certificate(pem: { text: string; from: string }): X509Certificate {
  try {
    return new X509Certificate(pem.text);
  } catch {
    throw new ConfigError(`invalid configuration: ${pem.from} holds no PEM certificate`);
  }
}

function privateKey(pem: { text: string; from: string }): KeyObject {
  try {
    return createPrivateKey(pem.text);
  } catch {
    throw new ConfigError(`invalid configuration: ${pem.from} holds no PEM private key (an encrypted key is not supported)`);
  }
}

/**
 * The local dev server by default; a cluster through TLS, with a client certificate (mTLS) or an API
 * key (Temporal Cloud). Reads and checks every PEM now: a missing file, a key without its
 * certificate, or a key that is not the certificate's is a ConfigError naming the variable.
 */
export function temporalConnectionSettings(config: TemporalConfig): TemporalConnectionSettings {
  const cert = pemSetting(config, 'TEMPORAL_TLS_CLIENT_CERT');
  const key = pemSetting(config, 'TEMPORAL_TLS_CLIENT_KEY');
  const ca = pemSetting(config, 'TEMPORAL_TLS_SERVER_CA_CERT');
  if (cert && !key) throw new ConfigError('invalid configuration: a client certificate needs its key: set TEMPORAL_TLS_CLIENT_KEY_PATH (or _DATA)');
  if (key && !cert) throw new ConfigError('invalid configuration: a client key needs its certificate: set TEMPORAL_TLS_CLIENT_CERT_PATH (or _DATA)');
  const tlsWanted = config.TEMPORAL_TLS === 'true' || Boolean(config.TEMPORAL_API_KEY || cert || ca || config.TEMPORAL_TLS_SERVER_NAME);
  const settings = { address: config.TEMPORAL_ADDRESS, namespace: config.TEMPORAL_NAMESPACE, ...(config.TEMPORAL_API_KEY ? { apiKey: config.TEMPORAL_API_KEY } : {}) };
  if (!tlsWanted) return { ...settings, tls: false, describe: 'without TLS' };

  const tls: TLSConfig = {};
  const how: string[] = [];
  if (cert && key) {
    const crt = certificate(cert);
    if (!crt.checkPrivateKey(privateKey(key))) {
      throw new ConfigError(`invalid configuration: the key in ${key.from} is not the key of the certificate in ${cert.from}`);
    }
    tls.clientCertPair = { crt: Buffer.from(cert.text), key: Buffer.from(key.text) };
    how.push(`client certificate ${crt.subject.replace(/\n/g, ', ')} from ${cert.from}`);
  }
  if (ca) {
    certificate(ca);
    tls.serverRootCACertificate = Buffer.from(ca.text);
    how.push(`server CA from ${ca.from}`);
  }
  if (config.TEMPORAL_TLS_SERVER_NAME) {
    tls.serverNameOverride = config.TEMPORAL_TLS_SERVER_NAME;
    how.push(`server name ${config.TEMPORAL_TLS_SERVER_NAME}`);
  }
  if (config.TEMPORAL_API_KEY) how.push('API key from TEMPORAL_API_KEY');
  return { ...settings, tls, describe: `over TLS${how.length ? ` (${how.join('; ')})` : ''}` };
}

function connectionOptions(settings: TemporalConnectionSettings): Pick<ConnectionOptions, 'address' | 'tls'> & { apiKey?: string } {
  return { address: settings.address, tls: settings.tls, ...(settings.apiKey ? { apiKey: settings.apiKey } : {}) };
}

/** Temporal could not be reached or refused this process: the message names the address and how it authenticated. */
export class TemporalConnectError extends Error {
  constructor(settings: TemporalConnectionSettings, cause: unknown) {
    super(`cannot connect to Temporal at ${settings.address} ${settings.describe}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'TemporalConnectError';
  }
}

async function connecting<T>(settings: TemporalConnectionSettings, connect: () => Promise<T>): Promise<T> {
  try {
    return await connect();
  } catch (err) {
    throw new TemporalConnectError(settings, err);
  }
}

export async function connectClient(config: TemporalConfig | TemporalConnectionSettings): Promise<Client> {
  const settings = settingsOf(config);
  const connection = await connecting(settings, () => Connection.connect(connectionOptions(settings)));
  return new Client({ connection, namespace: settings.namespace });
}

/**
 * A client that connects on first use: the API starts, accepts runs and answers `/healthz` while
 * Temporal is down (accepted runs wait for the dispatcher; see dispatch/). Its settings are still
 * checked now.
 */
export function lazyClient(config: TemporalConfig | TemporalConnectionSettings): Client {
  const settings = settingsOf(config);
  return new Client({ connection: Connection.lazy(connectionOptions(settings)), namespace: settings.namespace });
}

export function connectWorkerConnection(config: TemporalConfig | TemporalConnectionSettings): Promise<NativeConnection> {
  const settings = settingsOf(config);
  return connecting(settings, () => NativeConnection.connect(connectionOptions(settings)));
}

function settingsOf(config: TemporalConfig | TemporalConnectionSettings): TemporalConnectionSettings {
  return 'describe' in config ? config : temporalConnectionSettings(config);
}

/**
 * What a product process prints when it stops at start: a setting to change (a ConfigError, a
 * taken port, a Temporal that refused it) in one line; anything else with its stack, as a bug to trace.
 */
export function startupFailure(err: unknown): string {
  if (err instanceof ConfigError || err instanceof TemporalConnectError || err instanceof PortInUseError) return err.message;
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
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
