import type { CarriedMoves, TransitionInput } from '../core/contracts';

/**
 * Phase moves made and not yet written (see `MOVES_THAT_RIDE` in run-lifecycle.ts): the lifecycle
 * holds them here, and the next domain write of the lifecycle or the governor carries them into its
 * own transaction. Shared by both, so neither reaches into the other to write the run's moves.
 */
export class PendingMoves {
  private readonly moves: TransitionInput[] = [];

  hold(move: TransitionInput): void {
    this.moves.push(move);
  }

  /** Runs `write` with the moves held so far; they are let go only once it succeeded (a failed write leaves them to the next). */
  async carriedBy<T>(write: (moves: CarriedMoves) => Promise<T>): Promise<T> {
    const transitions = [...this.moves];
    const result = await write(transitions.length ? { transitions } : {});
    this.moves.splice(0, transitions.length);
    return result;
  }
}
