// The run state machine. Every backend reports states through this table, so
// an event that arrives late (out of order) can never move a run backwards.

export const RUN_STATES = ['PENDING', 'STARTING', 'RUNNING', 'SUSPENDED', 'STOPPING', 'COMPLETED', 'FAILED', 'KILLED', 'REJECTED'] as const;
export type RunState = (typeof RUN_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<RunState> = new Set(['COMPLETED', 'FAILED', 'KILLED', 'REJECTED']);

export function isTerminal(state: RunState): boolean {
  return TERMINAL_STATES.has(state);
}

const allowed: Record<RunState, readonly RunState[]> = {
  PENDING: ['STARTING', 'RUNNING', 'SUSPENDED', 'STOPPING', 'COMPLETED', 'FAILED', 'KILLED', 'REJECTED'],
  STARTING: ['RUNNING', 'SUSPENDED', 'STOPPING', 'COMPLETED', 'FAILED', 'KILLED'],
  RUNNING: ['SUSPENDED', 'STOPPING', 'COMPLETED', 'FAILED', 'KILLED'],
  SUSPENDED: ['PENDING', 'STARTING', 'RUNNING', 'STOPPING', 'COMPLETED', 'FAILED', 'KILLED'],
  STOPPING: ['COMPLETED', 'FAILED', 'KILLED'],
  COMPLETED: [],
  FAILED: [],
  KILLED: [],
  REJECTED: [],
};

export function canTransition(from: RunState, to: RunState): boolean {
  return from === to || allowed[from].includes(to);
}

export class TransitionError extends Error {
  override name = 'TransitionError';
}

export interface Transition {
  from: RunState;
  to: RunState;
  at: number;
  message?: string;
}

/**
 * Holds one run's state. `offer` applies a transition if the table allows it
 * and reports whether it did; out-of-order or repeated states are dropped.
 */
export class RunStateMachine {
  private current: RunState;
  readonly history: Transition[] = [];

  constructor(initial: RunState = 'PENDING', private readonly onChange?: (t: Transition) => void) {
    this.current = initial;
  }

  get state(): RunState {
    return this.current;
  }

  /** Applies `to` if allowed; returns true when the state changed. */
  offer(to: RunState, message?: string): boolean {
    if (to === this.current || !canTransition(this.current, to)) return false;
    const t: Transition = { from: this.current, to, at: Date.now(), message };
    this.current = to;
    this.history.push(t);
    this.onChange?.(t);
    return true;
  }

  /** Like offer, but throws when the transition is not allowed (for commands, not events). */
  require(to: RunState, message?: string): void {
    if (to === this.current) return;
    if (!canTransition(this.current, to)) throw new TransitionError(`a run cannot go from ${this.current} to ${to}`);
    this.offer(to, message);
  }
}

/** States of one instance (a pod or a process). */
export const INSTANCE_STATES = ['PENDING', 'STARTING', 'RUNNING', 'STOPPING', 'COMPLETED', 'FAILED', 'KILLED'] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];
