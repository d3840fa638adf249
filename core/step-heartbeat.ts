/**
 * How a running skill step shows it is alive. It beats every interval; Temporal declares its
 * worker lost after the timeout, several beats, so one late beat is not a lost worker. A SIGKILLed
 * worker costs the step the timeout plus one retry interval, not its ten-minute start-to-close.
 */
export const STEP_HEARTBEAT_INTERVAL_MS = 3_000;
export const STEP_HEARTBEAT_TIMEOUT_MS = 5 * STEP_HEARTBEAT_INTERVAL_MS;
