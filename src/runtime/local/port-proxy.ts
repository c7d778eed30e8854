// Publishes an announced port of a container with its own network namespace on
// the host's 127.0.0.1, with no host firewall change and no slirp/CNI tools:
// two small processes per port, joined by a UNIX socket (UNIX sockets belong to
// the file system, not to a network namespace). One process per side serves
// every announced port of the instance.
//
//   outer (host netns):      127.0.0.1:<port>  ->  <instance dir>/port-<port>.sock
//   inner (container netns): <instance dir>/port-<port>.sock  ->  127.0.0.1:<port>
//
// Started by the instance supervisor (supervisor.ts); each ends when the
// supervisor (pid given) is gone, so nothing outlives the instance.
//
// Run: node port-proxy.js inner|outer <instance dir> <supervisor pid> <port>...
import { statSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';

function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', end);
  b.on('error', end);
  a.on('close', end);
  b.on('close', end);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function socketPathFor(instanceDir: string, port: number): string {
  return `${instanceDir}/port-${port}.sock`;
}

export function runPortProxy(mode: 'inner' | 'outer', instanceDir: string, supervisorPid: number, ports: number[]): void {
  const sockets = ports.map((port) => socketPathFor(instanceDir, port));
  // A file's identity: inode and change time in nanoseconds (an inode number alone is soon reused).
  const identityOf = (file: string): string | undefined => {
    try {
      const stat = statSync(file, { bigint: true });
      return `${stat.ino}:${stat.ctimeNs}`;
    } catch {
      return undefined;
    }
  };
  // The sockets this proxy created, by identity: a restarted instance's new proxy creates its own at
  // the same paths, and this one, ending a moment later, must not remove those.
  const created = new Map<string, string>();
  const removeSockets = () => {
    if (mode !== 'inner') return;
    for (const [file, identity] of created) if (identityOf(file) === identity) unlinkSync(file);
  };
  // Left by an instance whose proxy could not clean up (killed): ours to replace.
  if (mode === 'inner') for (const s of sockets) if (identityOf(s) !== undefined) unlinkSync(s);
  for (const port of ports) {
    const socketPath = socketPathFor(instanceDir, port);
    const server =
      mode === 'inner'
        ? createServer((client) => pipeBoth(client, connect({ host: '127.0.0.1', port })))
        : createServer((client) => pipeBoth(client, connect({ path: socketPath })));
    // After a restart by weft the previous instance's proxy may hold the port for a moment
    // longer (it ends within one poll of its supervisor's end): retry for a while.
    const retryUntil = Date.now() + 15_000;
    server.on('error', (error: NodeJS.ErrnoException) => {
      if (mode === 'outer' && error.code === 'EADDRINUSE' && Date.now() < retryUntil) {
        setTimeout(() => server.listen(port, '127.0.0.1'), 100);
        return;
      }
      process.stderr.write(`[weft] port proxy (${mode}) for port ${port}: ${error.message}\n`);
      removeSockets();
      process.exit(1);
    });
    if (mode === 'inner') {
      server.listen(socketPath, () => {
        const identity = identityOf(socketPath);
        if (identity !== undefined) created.set(socketPath, identity);
      });
    } else server.listen(port, '127.0.0.1');
  }
  const watch = setInterval(() => {
    if (alive(supervisorPid)) return;
    clearInterval(watch);
    removeSockets();
    process.exit(0);
  }, 500);
}

/** This file, for the supervisor to run. */
export const PORT_PROXY_SCRIPT = new URL(import.meta.url).pathname;

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, instanceDir, supervisor, ...ports] = process.argv.slice(2);
  if ((mode !== 'inner' && mode !== 'outer') || !instanceDir || !(Number(supervisor) > 0) || ports.length === 0 || !ports.every((p) => Number(p) > 0)) {
    process.stderr.write('usage: node port-proxy.js inner|outer <instance dir> <supervisor pid> <port>...\n');
    process.exit(2);
  }
  runPortProxy(mode, instanceDir, Number(supervisor), ports.map(Number));
}
