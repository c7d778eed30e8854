// A weft process SIGKILLed in the middle of a local submission, right after it started an
// instance's supervisor (a CLI run interrupted, a master dying in its hand-over): the instance is
// in the run's record, so the next process sees it, and a kill ends its program. (Before, the
// record named an instance only once every instance had started: the program ran on, an orphan
// no record named, and the run waited for its start deadline with no instance.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { isTerminal, newRunId } from '../../src/runtime/index.js';
import { createLocalRuntime } from '../../src/runtime/local/index.js';
import { commandLines } from '../support/process.js';
import { buildShellImage } from '../support/shell-image.js';
import { withTempDir } from '../support/temp.js';
import { waitFor } from '../support/wait.js';

const localIndex = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'runtime', 'local', 'index.js');
const specIndex = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'runtime', 'index.js');

/** Pids of processes (other than this one) whose command line passes `matches`. */
const processes = (matches: (commandLine: string) => boolean): number[] =>
  commandLines()
    .filter((p) => p.pid !== process.pid && matches(p.commandLine))
    .map((p) => p.pid);

const kill = (pids: number[]) => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // ended meanwhile
    }
  }
};

test('a submitter SIGKILLed right after starting an instance leaves it in the record: seen by the next process, ended by a kill', { timeout: 120_000 }, () =>
  withTempDir('weft-crash-submit-', async (stateDir) => {
    const image = await buildShellImage();
    // A program no other test runs, to find it among the machine's processes.
    const program = `sleep 3000.${randomBytes(3).readUIntBE(0, 3)}`;
    const programs = () => processes((commandLine) => commandLine === program);
    try {
      const runId = newRunId('crash');
      const script = `
        const { createLocalRuntime } = await import(${JSON.stringify(localIndex)});
        const { parseAppSpec } = await import(${JSON.stringify(specIndex)});
        const runtime = await createLocalRuntime({
          stateDir: ${JSON.stringify(stateDir)}, mode: 'host',
          // The crash: right after the first instance's supervisor started, before the second one.
          onInstanceLaunched: () => process.kill(process.pid, 'SIGKILL'),
        });
        const spec = parseAppSpec({ name: 'crash', runnables: [{ name: 'web', kind: 'service', instances: 2, image: ${JSON.stringify(image.reference)}, args: ['sh', '-c', ${JSON.stringify(`exec ${program}`)}] }] });
        await runtime.submit({ runId: ${JSON.stringify(runId)}, spec, files: [] });
        console.log('not killed');`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d));
      child.stderr.on('data', (d: Buffer) => (output += d));
      const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, s) => resolve(s)));
      assert.equal(signal, 'SIGKILL', `the submitter was to be killed at its first instance's start: ${output}`);

      const runtime = await createLocalRuntime({ stateDir, mode: 'host' });
      try {
        const status = await runtime.status(runId);
        assert.ok(status, 'the next process finds the run');
        assert.deepEqual(status.runnables[0]?.instances.map((i) => i.id), ['0'], 'the instance started before the crash is in the record');
        // Its supervisor lives on and starts the program.
        await waitFor('the program of instance 0 to run', () => programs().length === 1, 30_000);

        await runtime.kill(runId);
        await waitFor('the program to end after the kill', () => programs().length === 0, 30_000);
        const ended = await waitFor('the run to end', async () => {
          const s = await runtime.status(runId);
          return s && isTerminal(s.state) ? s : undefined;
        }, 30_000);
        assert.equal(ended.state, 'KILLED', JSON.stringify(ended));
      } finally {
        await runtime.kill(runId).catch(() => undefined);
        await runtime.close();
      }
    } finally {
      // Whatever a failed run of this test left: supervisors of this state dir first (they restart programs), then programs.
      kill(processes((commandLine) => commandLine.includes(stateDir)));
      kill(programs());
      await image.remove();
    }
  }),
);
