// `weft registry serve` as its own process for tests: started on a free loopback
// port (--addr 127.0.0.1:0 --json), and its address read from the JSON line it prints.
import { spawn, type ChildProcess } from 'node:child_process';
import { weftMain } from './command.js';

export interface RegistryAddress {
  /** host:port */
  host: string;
  port: number;
  /** http://host:port */
  url: string;
}

/**
 * Waits for the address a `weft registry serve --json` (or a container running it) prints on
 * its standard output; fails with what it printed when it exits first or says nothing in time.
 */
export function registryAddress(child: ChildProcess, timeoutMs = 60_000): Promise<RegistryAddress> {
  let out = '';
  let err = '';
  return new Promise<RegistryAddress>((resolve, reject) => {
    const done = (error?: Error, address?: RegistryAddress) => {
      clearTimeout(timer);
      child.stdout?.off('data', onOut);
      child.stderr?.off('data', onErr);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(address!);
    };
    const onOut = (d: Buffer | string) => {
      out += d.toString();
      const m = /"url":\s*"([^"]+)",\s*"host":\s*"([^"]+)",\s*"port":\s*(\d+)/.exec(out);
      if (m) done(undefined, { url: m[1]!, host: `${m[2]}:${m[3]}`, port: Number(m[3]) });
    };
    const onErr = (d: Buffer | string) => (err += d.toString());
    const onExit = (code: number | null) => done(new Error(`weft registry serve exited ${code} before listening:\n${out}${err}`));
    const timer = setTimeout(() => done(new Error(`weft registry serve did not report its address within ${timeoutMs / 1000} s:\n${out}${err}`)), timeoutMs);
    child.stdout?.on('data', onOut);
    child.stderr?.on('data', onErr);
    child.on('exit', onExit);
  });
}

export interface ServedRegistry extends RegistryAddress {
  child: ChildProcess;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
  stop(): Promise<void>;
}

/** Starts `weft registry serve --root <root>` (plus `extra` options) and waits for its address. */
export async function serveRegistry(root: string, extra: readonly string[] = []): Promise<ServedRegistry> {
  const child = spawn(process.execPath, [weftMain, 'registry', 'serve', '--root', root, '--addr', '127.0.0.1:0', '--json', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const address = await registryAddress(child);
    // Keep reading its output, so a chatty registry never blocks on a full pipe.
    child.stdout!.resume();
    child.stderr!.resume();
    return { ...address, child, stop: () => stopProcess(child) };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}

/** Ends a child: SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves once it has. */
export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
