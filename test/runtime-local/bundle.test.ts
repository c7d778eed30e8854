// Unit tests (no runc): the bundle's process, environment and mounts, the
// host-process rewrite, quantities, and the commands file format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatAnnotations, hostProcess, memoryBytes, cpuMillicores, parseAnnotations, portEnvName, processArgs, runcConfig } from '../../src/runtime/local/index.js';
import { parseAppSpec } from '../../src/runtime/index.js';
import type { ImageConfig } from '../../src/image/index.js';

const image: ImageConfig = {
  architecture: 'amd64',
  os: 'linux',
  config: {
    Entrypoint: ['/opt/java/bin/java', '-cp', '/app/resources:/app/classes:/app/libs/*', 'Main'],
    Cmd: ['default-arg'],
    Env: ['PATH=/opt/java/bin:/usr/bin', 'JAVA_HOME=/opt/java', 'KEEP=image'],
    WorkingDir: '/app',
  },
  rootfs: { type: 'layers', diff_ids: [] },
};
const spec = (args: string[]) =>
  parseAppSpec({ name: 'a', runnables: [{ name: 'r', kind: 'service', image: 'x/y:1', args, env: { KEEP: 'spec', EXTRA: '1' }, resources: { cpu: '250m', memory: '128Mi' } }] }).runnables[0];

test('args replace the image Cmd and keep its Entrypoint, as on Kubernetes', () => {
  assert.deepEqual(processArgs(image, spec([])).slice(-2), ['Main', 'default-arg']);
  assert.deepEqual(processArgs(image, spec(['a', 'b'])).slice(-3), ['Main', 'a', 'b']);
  assert.throws(() => processArgs({ ...image, config: {} }, spec([])), /no Entrypoint or Cmd/);
});

test('runc config: no rlimits, host network, read-only root, mounts, limits, env precedence', () => {
  const cfg = runcConfig({ config: image, runnable: spec([]), rootfs: '/r', weftEnv: { WEFT_RUN_ID: 'run-1', KEEP: 'weft' }, podinfoDir: '/p', filesDir: '/f', hostname: 'r-0', cgroupsPath: '/weft/c', limits: true }) as any;
  assert.equal(cfg.process.rlimits, undefined);
  assert.equal(cfg.process.terminal, false);
  assert.deepEqual(cfg.linux.namespaces.map((n: { type: string }) => n.type).sort(), ['ipc', 'mount', 'pid', 'uts']);
  assert.deepEqual(cfg.root, { path: '/r', readonly: true });
  assert.equal(cfg.process.cwd, '/app');
  const env = new Map(cfg.process.env.map((e: string) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  assert.equal(env.get('PATH'), '/opt/java/bin:/usr/bin', "the image's PATH wins over the default");
  assert.equal(env.get('KEEP'), 'spec', 'the spec env wins over weft and the image');
  assert.equal(env.get('WEFT_RUN_ID'), 'run-1');
  const mounts = new Map(cfg.mounts.map((m: { destination: string; source: string }) => [m.destination, m]));
  assert.equal((mounts.get('/etc/weft/podinfo') as any).source, '/p');
  assert.equal((mounts.get('/etc/weft/files') as any).source, '/f');
  assert.equal((mounts.get('/tmp') as any).type, 'tmpfs');
  assert.equal(cfg.linux.resources.memory.limit, 128 * 1024 * 1024);
  assert.deepEqual(cfg.linux.resources.cpu, { quota: 25_000, period: 100_000 });
});

test('host-process mode: /app paths into the rootfs, the host java, no image JAVA_HOME', () => {
  const host = hostProcess({ config: image, runnable: spec(['x']), rootfs: '/state/rootfs', weftEnv: { WEFT_RUN_ID: 'r' }, podinfoDir: '/p', hostJava: '/usr/bin/java' });
  assert.deepEqual(host.argv, ['/usr/bin/java', '-cp', '/state/rootfs/app/resources:/state/rootfs/app/classes:/state/rootfs/app/libs/*', 'Main', 'x']);
  assert.equal(host.cwd, '/state/rootfs/app');
  assert.equal(host.env.JAVA_HOME, undefined);
  assert.equal(host.env.KEEP, 'spec');
  assert.ok(host.notes.some((n) => /host's JVM/.test(n)));
  const escaping = hostProcess({ config: { ...image, config: { ...image.config, WorkingDir: '../../../etc' } }, runnable: spec([]), rootfs: '/state/rootfs', weftEnv: {}, podinfoDir: '/p', hostJava: '/usr/bin/java' });
  assert.equal(escaping.cwd, '/state/rootfs/etc', "an image WorkingDir with .. stays inside the rootfs");
});

test('quantities and names', () => {
  assert.equal(memoryBytes('256Mi'), 268_435_456);
  assert.equal(memoryBytes('1G'), 1e9);
  assert.equal(cpuMillicores('500m'), 500);
  assert.equal(cpuMillicores('1.5'), 1500);
  assert.equal(portEnvName('admin-http'), 'WEFT_PORT_ADMIN_HTTP');
});

test('the commands file uses the downward-API format: key="value" lines, quotes escaped, round trip', () => {
  const value = JSON.stringify({ command: 'reload', payload: 'a "quoted" value' });
  const text = formatAnnotations({ 'weft.io/command-b': value, 'weft.io/command-a': 'x' });
  assert.equal(text.split('\n')[0], 'weft.io/command-a="x"', 'sorted by key');
  assert.match(text, /weft\.io\/command-b="\{\\"command\\":\\"reload\\"/);
  assert.deepEqual(parseAnnotations(text), { 'weft.io/command-a': 'x', 'weft.io/command-b': value });
});
