// A master on a temp store and a private local-runtime state dir, with a small HTTP client;
// `weft master` as a child process (for the tests that SIGKILL it).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startMaster, type MasterOptions, type RunningMaster } from '../../src/master/index.js';
import { createLocalRuntime, type LocalRuntime } from '../../src/runtime/local/index.js';
import { weftMain } from '../twill/fixtures/probe-image.js';
import { StopWaiting, waitFor } from '../support/wait.js';

export interface TestMaster {
  master: RunningMaster;
  runtime: LocalRuntime;
  adminToken: string;
  dir: string;
  tokenFile: string;
  stateDir: string;
  /** Restarts the master on the same store, runtime state and token file. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestMaster(options: { store?: string; mode?: 'host' | 'runc'; extra?: Partial<MasterOptions> } = {}): Promise<TestMaster> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-master-test-'));
  const stateDir = path.join(dir, 'local');
  const tokenFile = path.join(dir, 'admin-token');
  const store = options.store ?? `sqlite:${path.join(dir, 'master.db')}`;
  const runtime = await createLocalRuntime({ stateDir, mode: options.mode ?? 'host', pollMs: 200 });
  const start = () => startMaster({ addr: '127.0.0.1:0', store, runtime, adminTokenFile: tokenFile, reconcileIntervalMs: 60_000, ...options.extra });
  const t: TestMaster = {
    master: await start(),
    runtime,
    adminToken: (await fs.readFile(tokenFile, 'utf8')).trim(),
    dir,
    tokenFile,
    stateDir,
    async restart() {
      await t.master.close();
      t.master = await start();
    },
    async close() {
      await t.master.close().catch(() => undefined);
      for (const s of await runtime.list().catch(() => [])) if (!['COMPLETED', 'FAILED', 'KILLED', 'REJECTED'].includes(s.state)) await runtime.kill(s.runId).catch(() => undefined);
      await runtime.close();
      await fs.rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    },
  };
  return t;
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** How long a call may take, answer and body, unless it says otherwise: a master that hangs fails the test with its request named. */
const CALL_TIMEOUT_MS = 120_000;

export async function call(base: string, method: string, path: string, options: { token?: string; body?: unknown; rawBody?: string | Buffer; headers?: Record<string, string>; statusOnly?: boolean; timeoutMs?: number } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | Buffer | undefined;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  } else if (options.rawBody !== undefined) {
    body = options.rawBody;
    headers['content-type'] ??= 'application/json';
  }
  const timeoutMs = options.timeoutMs ?? CALL_TIMEOUT_MS;
  const signal = AbortSignal.timeout(timeoutMs);
  const named = (error: unknown): Error =>
    signal.aborted ? new Error(`${method} ${base}${path}: no complete answer within ${timeoutMs} ms`) : (error as Error);
  const res = await fetch(`${base}${path}`, { method, headers, body, signal }).catch((error) => {
    throw named(error);
  });
  // A stream that answered 200 (watch) would never end: read only its status then.
  if (options.statusOnly && res.status === 200) {
    await res.body?.cancel();
    return { status: res.status, headers: res.headers, text: '', json: undefined };
  }
  const text = await res.text().catch((error) => {
    throw named(error);
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export { waitFor } from '../support/wait.js';

/**
 * Every archived log line of a run, paged through the API `limit` at a time with `after` cursors (asserting
 * that the cursors are consecutive and pages never exceed the limit); with format text, one request.
 */
export async function pagedLogs(base: string, token: string, namespace: string, runId: string, limit: number, format: 'text' | 'json' = 'json'): Promise<string[]> {
  const lines: string[] = [];
  let after = 0;
  for (;;) {
    const r = await call(base, 'GET', `/api/v1/namespaces/${namespace}/runs/${runId}/logs?after=${after}&limit=${limit}&format=${format}`, { token });
    assert.equal(r.status, 200, r.text);
    if (format === 'text') return r.text.split('\n').filter(Boolean);
    const page = r.text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { seq: number; line: string });
    if (page.length === 0) return lines;
    assert.ok(page.length <= limit);
    page.forEach((p, i) => assert.equal(p.seq, (i === 0 ? after : page[i - 1].seq) + 1, 'cursors are consecutive'));
    lines.push(...page.map((p) => p.line));
    after = page[page.length - 1].seq;
  }
}

export interface MasterProcess {
  child: ChildProcess;
  url: string;
  /** What it wrote to stderr so far (its log). */
  log(): string;
  /** Waits for a line of its log matching `pattern`. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (when still running), then waits for the exit. */
  stop(): Promise<void>;
}

/** Starts `weft master --addr 127.0.0.1:0 ...args` and waits for the URL it prints on stdout. */
export async function spawnMaster(args: string[], env: Record<string, string> = {}): Promise<MasterProcess> {
  const child = spawn(process.execPath, [weftMain, 'master', '--addr', '127.0.0.1:0', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  const end = async (signal: NodeJS.Signals) => {
    if (exited()) return;
    const done = once(child, 'exit');
    child.kill(signal);
    await done;
  };
  const url = await waitFor('a master URL', async () => {
    if (exited()) throw new StopWaiting(`weft master exited (${child.exitCode ?? child.signalCode})`);
    return /^(https?:\/\/\S+)$/m.exec(stdout)?.[1];
  }, 60_000).catch(async (error) => {
    await end('SIGKILL');
    throw new Error(`${error}: ${stderr}`);
  });
  return {
    child,
    url,
    log: () => stderr,
    waitForLog: (pattern, timeoutMs = 60_000) =>
      waitFor(`${pattern} in the master's log`, async () => {
        const m = pattern.exec(stderr);
        if (!m && exited()) throw new StopWaiting(`weft master exited (${child.exitCode ?? child.signalCode}): ${stderr.slice(-2000)}`);
        return m ?? undefined;
      }, timeoutMs),
    kill: () => end('SIGKILL'),
    stop: () => end('SIGTERM'),
  };
}
