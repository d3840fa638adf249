import type { DrillStack, StackOptions } from './stack';

// What a drill's fault is given and must offer; the faults live in faults.ts and modules of their own.

export interface FaultOptions {
  /** worker-kill: how many times the worker is killed. */
  kills: number;
  /** How long an outage lasts (db-outage, redis-outage), or the dev server stays down (temporal-restart). */
  outageSeconds: number;
  /**
   * worker-kill: kill only at a moment when no skill step is running on the worker. Until skill
   * activities heartbeat, a kill that lands on one leaves that step to its 10-minute start-to-close
   * timeout; aiming keeps the CI drill short. The full drill does not aim.
   */
  spareSkillSteps: boolean;
  /** control-flood: how long the flood of controls lasts (8 s). */
  floodSeconds?: number;
  /** Worker processes; with more than one, worker-kill kills one for good each time (at most all but one). */
  workers?: number;
  /** API processes for the drills that kill one (api-kill: 2). */
  apis?: number;
  /**
   * On the cluster of ./temporal-cluster.sh: the environment that script needs to find it (its
   * port block, databases and pid files), over this process's. history-kill needs it.
   */
  clusterEnv?: Record<string, string>;
}

export interface FaultContext {
  stack: DrillStack;
  options: FaultOptions;
  /** Adds a line to the drill's timeline. */
  note(what: string): void;
  /** The drill's runs not yet finished. */
  inFlight(): Promise<string[]>;
  /** Records that the fault was not injected as asked (or what it checked did not hold): the drill fails. */
  fail(why: string): void;
  /** The drill's runs, in the order they were submitted (filled as they are, for a fault that lands during the submits). */
  runIds: string[];
  /** Submits sent so far (answered or not), of `submitsPlanned`. */
  submitsSent(): number;
  submitsPlanned: number;
  /** Runs the fault stops on purpose: they must end stopped, once, instead of completed. */
  expectStopped(runIds: string[]): void;
  /** The drill's timeout, as a time. */
  deadline: number;
}

export interface Fault {
  /** What the stack must offer this fault. */
  needs: Pick<StackOptions, 'fileBackedTemporal' | 'postgresProxy' | 'redisProxy' | 'eventProcesses'> & {
    /** At least this many relay-and-reactor copies. */
    eventServices?: number;
    /** API processes unless `--apis` says how many. */
    apiProcesses?: number;
  };
  /**
   * The fault lands while the runs are being submitted: they go out `SUBMIT_PACE_MS` apart instead
   * of all at once, and the fault is injected as the first goes.
   */
  duringSubmits?: boolean;
  /** The drill's overall timeout unless one is given. */
  defaultTimeoutSeconds: number;
  describe(options: FaultOptions): string;
  inject(context: FaultContext): Promise<void>;
}
