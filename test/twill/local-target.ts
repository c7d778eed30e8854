// The local runtime as a Twill scenario target (runc or host-process mode),
// with a private state directory removed afterwards.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRunner, type Controller } from '../../src/runtime/index.js';
import { waitFor } from '../support/wait.js';
import { buildProbeImage } from './fixtures/probe-image.js';
import type { TwillTarget } from './scenarios.js';

export async function logLines(c: Controller): Promise<string[]> {
  const lines: string[] = [];
  for await (const l of c.logs()) lines.push(`[${l.runnable}/${l.instance}] ${l.line}`);
  return lines;
}

/** Polls a run's logs until `predicate` holds. */
export async function waitForLogs(c: Controller, what: string, predicate: (lines: string[]) => boolean, timeoutMs = 30_000): Promise<string[]> {
  let lines: string[] = [];
  return waitFor(what, async () => (predicate((lines = await logLines(c))) ? lines : undefined), { timeoutMs, intervalMs: 200 }).catch((error: Error) => {
    throw new Error(`${error.message}; the logs:\n${lines.join('\n')}`);
  });
}

/** Reads one line from a TCP endpoint (the probe answers "instance <id>"). */
export function readLine(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.on('end', () => resolve(data.trim()));
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer from ${host}:${port}`)));
  });
}

/**
 * Reads one line from an instance that runs but may not listen yet: the local runtime reports
 * RUNNING when the process starts (it has no readiness gate), and its port proxy accepts and
 * closes while nothing listens behind it. Retries for up to 30 s.
 */
export async function readLineWhenListening(host: string, port: number): Promise<string> {
  let answer = '';
  return waitFor(`an answer from ${host}:${port}`, async () => {
    answer = await readLine(host, port).catch((error: Error) => `(${error.message})`);
    return /^instance /.test(answer) ? answer : undefined;
  }, { timeoutMs: 30_000, intervalMs: 200 }).catch(() => answer);
}

export async function localTarget(mode: 'runc' | 'host'): Promise<TwillTarget> {
  const image = await buildProbeImage();
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), `weft-local-${mode}-`));
  let runner;
  try {
    runner = await createRunner({ runtime: 'local', stateDir, mode });
  } catch (error) {
    await image.remove();
    await fs.rm(stateDir, { recursive: true, force: true });
    throw error;
  }
  return {
    runner,
    image: image.reference,
    servicePort: mode === 'runc' ? 18080 : 18090,
    live: true,
    usageMeasured: true,
    failBatch(runnable) {
      runnable.args = ['fail', '3'];
    },
    async checkCommandReceived(c, command, payload) {
      const status = (await runner.runtime.status(c.runId))!;
      const ids = status.runnables[0].instances.map((i) => i.id);
      await waitForLogs(c, `command ${command} in every instance`, (lines) =>
        ids.every((id) => lines.some((l) => l.startsWith(`[web/${id}] command received: weft.io/command-`) && l.includes(`\\"command\\":\\"${command}\\"`) && l.includes(payload))),
      );
    },
    async checkEndpoints(c, endpoints, instances) {
      assert.equal(endpoints.length, instances);
      const answers = await Promise.all(endpoints.map((e) => readLineWhenListening(e.host, e.port)));
      assert.deepEqual(answers.sort(), Array.from({ length: instances }, (_, i) => `instance ${i}`));
    },
    async close() {
      await runner.close();
      await image.remove();
      // Detached supervisors may still be writing their exit records after the run is terminal.
      await fs.rm(stateDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    },
  };
}
