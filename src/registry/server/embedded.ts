// The default local registry: answer at WEFT_REGISTRY_ADDR (127.0.0.1:5000), or
// start `weft registry serve` detached in the background and wait until it does.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface EnsureOptions {
  /** host:port (default $WEFT_REGISTRY_ADDR or 127.0.0.1:5000). */
  addr?: string;
  /** Storage folder for a registry this call starts. */
  root?: string;
  /** How long to wait for a started registry to answer (default 15 s). */
  timeoutMs?: number;
}

export interface EnsureResult {
  url: string;
  started: boolean;
  pid?: number;
  logFile?: string;
}

export function defaultRegistryAddr(): string {
  return process.env.WEFT_REGISTRY_ADDR || '127.0.0.1:5000';
}

function stateDir(): string {
  return join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'weft');
}

/** True when something at `addr` answers /v2/ like a registry (200, or 401 asking for credentials). */
export function registryAnswers(addr: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(':')).replace(/^\[|\]$/g, ''), Number(addr.slice(addr.lastIndexOf(':') + 1))];
    const req = request({ host, port, path: '/v2/', method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve((res.statusCode === 200 || res.statusCode === 401) && res.headers['docker-distribution-api-version'] !== undefined);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

export async function ensureEmbeddedRegistry(options: EnsureOptions = {}): Promise<EnsureResult> {
  const addr = options.addr ?? defaultRegistryAddr();
  const url = `http://${addr}`;
  if (await registryAnswers(addr)) return { url, started: false };

  const dir = stateDir();
  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, 'registry.log');
  const pidFile = join(dir, 'registry.pid');
  const main = fileURLToPath(new URL('../../cli/main.js', import.meta.url));
  const args = [main, 'registry', 'serve', '--addr', addr, '--log-level', 'info'];
  if (options.root) args.push('--root', options.root);
  const out = openSync(logFile, 'a');
  // Blob commits are file work on libuv's thread pool (open, fsync, rename); with its
  // default 4 threads concurrent pushes queue behind each other's fsyncs. The pool size
  // is read once at process start, so it is set in the server's environment.
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', out, out], env: { UV_THREADPOOL_SIZE: '16', ...process.env } });
  closeSync(out);
  let exitCode: number | null = null;
  child.once('exit', (code) => {
    exitCode = code ?? -1;
  });
  child.unref();
  if (child.pid !== undefined) writeFileSync(pidFile, `${child.pid}\n`);

  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  while (Date.now() < deadline) {
    if (await registryAnswers(addr)) return { url, started: true, pid: child.pid, logFile };
    if (exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  let tail = '';
  try {
    tail = readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n');
  } catch {
    /* no log */
  }
  throw new Error(`the embedded registry did not start at ${addr} (${exitCode !== null ? `exited with ${exitCode}` : 'no answer'}); see ${logFile}:\n${tail}`);
}
