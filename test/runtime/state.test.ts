import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canTransition, isTerminal, RunStateMachine, TransitionError } from '../../src/runtime/index.js';

test('the happy path of a batch run', () => {
  const seen: string[] = [];
  const m = new RunStateMachine('PENDING', (t) => seen.push(`${t.from}->${t.to}`));
  assert.ok(m.offer('STARTING'));
  assert.ok(m.offer('RUNNING'));
  assert.ok(m.offer('COMPLETED'));
  assert.deepEqual(seen, ['PENDING->STARTING', 'STARTING->RUNNING', 'RUNNING->COMPLETED']);
  assert.equal(m.history.length, 3);
});

test('out-of-order and repeated events are dropped', () => {
  const m = new RunStateMachine();
  m.offer('RUNNING');
  assert.equal(m.offer('STARTING'), false);
  assert.equal(m.offer('PENDING'), false);
  assert.equal(m.offer('RUNNING'), false);
  assert.equal(m.state, 'RUNNING');
  m.offer('STOPPING');
  assert.equal(m.offer('RUNNING'), false);
  assert.ok(m.offer('KILLED'));
  for (const s of ['PENDING', 'STARTING', 'RUNNING', 'FAILED', 'COMPLETED'] as const) assert.equal(m.offer(s), false);
  assert.equal(m.state, 'KILLED');
});

test('skips forward are allowed (a fast batch run may never be seen RUNNING)', () => {
  const m = new RunStateMachine();
  assert.ok(m.offer('COMPLETED'));
  assert.ok(isTerminal(m.state));
});

test('suspend and resume', () => {
  const m = new RunStateMachine();
  m.offer('RUNNING');
  assert.ok(m.offer('SUSPENDED'));
  assert.ok(m.offer('PENDING'));
  assert.ok(m.offer('RUNNING'));
});

test('REJECTED only at admission; require throws on a bad command', () => {
  assert.ok(canTransition('PENDING', 'REJECTED'));
  assert.ok(!canTransition('RUNNING', 'REJECTED'));
  const m = new RunStateMachine('COMPLETED');
  assert.throws(() => m.require('RUNNING'), TransitionError);
});
