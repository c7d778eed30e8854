// Unit tests (no runc): the bundle's process, environment and mounts, the
// host-process rewrite, quantities, and the commands file format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { defaultSeccomp, formatAnnotations, hostProcess, memoryBytes, cpuMillicores, parseAnnotations, portEnvName, processArgs, resolveImageUser, runcConfig } from '../../src/runtime/local/index.js';
import { parseAppSpec } from '../../src/runtime/index.js';
import type { ImageConfig } from '../../src/image/index.js';
import { tempDir } from '../support/temp.js';

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
  assert.deepEqual(cfg.linux.namespaces.map((n: { type: string }) => n.type).sort(), ['cgroup', 'ipc', 'mount', 'pid', 'uts']);
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

test('runc config: podman defaults: seccomp profile for our capabilities, masked paths, cgroup namespace and mount, the image user', () => {
  const cfg = runcConfig({ config: image, runnable: spec([]), rootfs: '/r', weftEnv: {}, podinfoDir: '/p', hostname: 'r-0', limits: true, user: { uid: 1000, gid: 1001 } }) as any;
  assert.deepEqual(cfg.process.user, { uid: 1000, gid: 1001 });
  assert.deepEqual(cfg.linux.resources.pids, { limit: 2048 });
  for (const p of ['/proc/keys', '/proc/acpi', '/proc/kcore', '/sys/firmware']) assert.ok(cfg.linux.maskedPaths.includes(p), p);
  assert.ok(cfg.linux.readonlyPaths.includes('/proc/sys'));
  const cgroup = cfg.mounts.find((m: { destination: string }) => m.destination === '/sys/fs/cgroup');
  assert.equal(cgroup.type, 'cgroup');
  assert.ok(cgroup.options.includes('ro'));
  const seccomp = cfg.linux.seccomp;
  assert.equal(seccomp.defaultAction, 'SCMP_ACT_ERRNO');
  const allowed = new Set(seccomp.syscalls.filter((s: { action: string }) => s.action === 'SCMP_ACT_ALLOW').flatMap((s: { names: string[] }) => s.names));
  for (const name of ['read', 'write', 'futex', 'clone', 'mmap', 'epoll_wait']) assert.ok(allowed.has(name), `${name} allowed`);
  // Refused (allowed only with capabilities local containers do not have, or never).
  for (const name of ['kexec_load', 'init_module', 'bpf', 'open_by_handle_at', 'swapon']) assert.ok(!allowed.has(name), `${name} not allowed`);
});

test('seccomp: rules follow capabilities and architectures as containers/common resolves them', () => {
  const plain = defaultSeccomp(['CAP_KILL'], 'x64', '6.1.0') as any;
  const admin = defaultSeccomp(['CAP_SYS_ADMIN'], 'x64', '6.1.0') as any;
  const names = (p: any) => new Set(p.syscalls.filter((s: { action: string }) => s.action === 'SCMP_ACT_ALLOW').flatMap((s: { names: string[] }) => s.names));
  assert.ok(!names(plain).has('bpf') && names(admin).has('bpf'), 'bpf needs CAP_SYS_ADMIN');
  assert.ok(!names(plain).has('init_module') && names(defaultSeccomp(['CAP_SYS_MODULE'], 'x64', '6.1.0')).has('init_module'), 'init_module needs CAP_SYS_MODULE');
  assert.deepEqual(plain.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  assert.ok(names(plain).has('arch_prctl'), 'amd64-only rules apply on x64');
  assert.ok(!names(defaultSeccomp(['CAP_KILL'], 'arm64', '6.1.0')).has('arch_prctl'), 'and not on arm64');
  assert.equal(defaultSeccomp(['CAP_KILL'], 'mips'), undefined);
});

test("the image's User: ids, names from the image's passwd/group, never read through a link out of the root", async () => {
  const root = await tempDir('weft-user-');
  try {
    const rootfs = path.join(root, 'rootfs');
    await fs.mkdir(path.join(rootfs, 'etc'), { recursive: true });
    await fs.writeFile(path.join(rootfs, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1234:2345::/app:/bin/sh\n');
    await fs.writeFile(path.join(rootfs, 'etc', 'group'), 'root:x:0:\nstaff:x:50:app\n');
    assert.deepEqual(await resolveImageUser(rootfs, undefined), { uid: 0, gid: 0 });
    assert.deepEqual(await resolveImageUser(rootfs, 'app'), { uid: 1234, gid: 2345 });
    assert.deepEqual(await resolveImageUser(rootfs, 'app:staff'), { uid: 1234, gid: 50 });
    assert.deepEqual(await resolveImageUser(rootfs, '1234'), { uid: 1234, gid: 2345 }, 'a numeric user gets its passwd group');
    assert.deepEqual(await resolveImageUser(rootfs, '42:43'), { uid: 42, gid: 43 });
    assert.deepEqual(await resolveImageUser(rootfs, '42'), { uid: 42, gid: 0 });
    await assert.rejects(resolveImageUser(rootfs, 'nobody-here'), /no user "nobody-here"/);
    // An image whose /etc/passwd points at the host's: not followed.
    const hostile = path.join(root, 'hostile');
    await fs.mkdir(path.join(hostile, 'etc'), { recursive: true });
    await fs.writeFile(path.join(root, 'host-passwd'), 'hostuser:x:777:777::/:/bin/sh\n');
    await fs.symlink(path.join(root, 'host-passwd'), path.join(hostile, 'etc', 'passwd'));
    await assert.rejects(resolveImageUser(hostile, 'hostuser'), /no user "hostuser"/);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});
