// Run state from instance observations: the one set of rules both backends use.
export { COMPLETED_MESSAGE, deriveRunState, FATAL_WAITING_REASONS, instanceLabel, runnableStatuses, SUSPENDED_MESSAGE, type RunnableObservation, type RunObservation, type RunVerdict } from './run-state.js';
