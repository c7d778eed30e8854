// Both ends of the bridge between the real node's network namespace and the host's loopback
// (scripts/k8s/real-node.sh, in-cluster networking). A unix socket crosses network namespaces,
// so no server ever listens on an address of the machine's own namespace other than loopback:
//
//   host:  node unix-bridge.mjs serve-unix SOCK 127.0.0.1:PORT [SOCK 127.0.0.1:PORT ...]
//          listens on each unix socket SOCK; every connection is piped to the TCP address.
//   netns: node unix-bridge.mjs serve-tcp ADDR:PORT SOCK [ADDR:PORT SOCK ...]
//          (run under nsenter --net) listens on each TCP address of the namespace; every connection
//          is piped to the unix socket.
//
// Bytes are copied as they are (TLS stays end to end). SIGTERM/SIGINT close the listeners and exit.
import net from 'node:net';
import { rmSync } from 'node:fs';

const [mode, ...rest] = process.argv.slice(2);
if (!['serve-unix', 'serve-tcp'].includes(mode) || rest.length === 0 || rest.length % 2 !== 0) {
  console.error('usage: unix-bridge.mjs serve-unix SOCK HOST:PORT [...] | serve-tcp HOST:PORT SOCK [...]');
  process.exit(2);
}

function hostPort(s) {
  const i = s.lastIndexOf(':');
  const host = s.slice(0, i);
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    console.error(`unix-bridge: '${s}' is not HOST:PORT`);
    process.exit(2);
  }
  return { host, port };
}

function pipe(client, connectOptions, what) {
  const upstream = net.connect(connectOptions);
  client.pipe(upstream).pipe(client);
  const close = (err) => {
    if (err && err.code !== 'ECONNRESET' && err.code !== 'EPIPE') console.error(`unix-bridge: ${what}: ${err.message}`);
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
}

const servers = [];
let pending = rest.length / 2;
for (let i = 0; i < rest.length; i += 2) {
  const server = net.createServer({ allowHalfOpen: false });
  if (mode === 'serve-unix') {
    const sock = rest[i];
    const target = hostPort(rest[i + 1]);
    rmSync(sock, { force: true });
    server.on('connection', (c) => pipe(c, target, `${sock} -> ${rest[i + 1]}`));
    server.listen(sock, ready);
  } else {
    const listen = hostPort(rest[i]);
    const sock = rest[i + 1];
    server.on('connection', (c) => pipe(c, { path: sock }, `${rest[i]} -> ${sock}`));
    server.listen({ host: listen.host, port: listen.port, exclusive: true }, ready);
  }
  server.on('error', (err) => {
    console.error(`unix-bridge: cannot listen on ${rest[i]}: ${err.message}`);
    process.exit(1);
  });
  servers.push(server);
}

function ready() {
  if (--pending === 0) console.error(`unix-bridge ${mode}: listening (${rest.filter((_, j) => j % 2 === 0).join(', ')})`);
}

function stop() {
  for (const s of servers) s.close();
  if (mode === 'serve-unix') for (let i = 0; i < rest.length; i += 2) rmSync(rest[i], { force: true });
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
