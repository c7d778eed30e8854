// Regression tests for issue 13's local-runtime findings: runs that could not start
// are recorded with their reason (4), a restart is not a failure and nothing outlives
// a run (8), the state directory is private, and run commands find a local run
// without --runtime (9).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { createRunner, isTerminal, parseAppSpec, type AppSpecInput, type Controller, type RunStatus, type TwillRunner } from '../../src/runtime/index.js';
import { createLocalRuntime, LocalRuntime } from '../../src/runtime/local/index.js';
import { buildProbeImage, type ProbeImage } from '../twill/fixtures/probe-image.js';
import { readLine, readLineWhenListening, waitForLogs } from '../twill/local-target.js';
import { weft } from '../support/command.js';
import { isAlive } from '../support/process.js';
import { StartedRuns } from '../support/runs.js';
import { waitFor } from '../support/wait.js';
import { tempDir } from '../support/temp.js';

const execFileAsync = promisify(execFile);

/** A gzip'd tar layer holding one file named `name`. */
async function tarLayer(name: string): Promise<{ gzipped: Buffer; diffId: string }> {
  const pack = tar.pack();
  pack.entry({ name, mode: 0o644 }, 'written by a hostile layer\n');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  const plain = Buffer.concat(chunks);
  return { gzipped: gzipSync(plain), diffId: `sha256:${createHash('sha256').update(plain).digest('hex')}` };
}

/** An OCI layout with one layer: by default one that is not a tar (pulling works, unpacking cannot). */
async function unpackableImage(dir: string, layerData?: { gzipped: Buffer; diffId: string }): Promise<string> {
  const blob = async (data: Buffer) => {
    const hex = createHash('sha256').update(data).digest('hex');
    await fs.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
    await fs.writeFile(path.join(dir, 'blobs', 'sha256', hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layer = await blob(layerData?.gzipped ?? Buffer.from('\x1f\x8b this is not a gzip stream, nor a tar'.repeat(20)));
  const config = await blob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/true'] }, rootfs: { type: 'layers', diff_ids: [layerData?.diffId ?? layer.digest] } })));
  const manifest = await blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    ),
  );
  await fs.writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'bad' } }] }),
  );
  return `oci:${dir}:bad`;
}

/** Adds tag `to` to an OCI layout: the image tagged `from` with its config's User set to `user`. */
async function tagWithUser(layout: string, from: string, to: string, user: string): Promise<string> {
  const blobPath = (digest: string) => path.join(layout, 'blobs', ...digest.split(':'));
  const put = async (data: Buffer) => {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    await fs.writeFile(blobPath(digest), data);
    return { digest, size: data.length };
  };
  const index = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8'));
  const desc = index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === from);
  const manifest = JSON.parse(await fs.readFile(blobPath(desc.digest), 'utf8'));
  const config = JSON.parse(await fs.readFile(blobPath(manifest.config.digest), 'utf8'));
  config.config = { ...config.config, User: user };
  manifest.config = { ...manifest.config, ...(await put(Buffer.from(JSON.stringify(config)))) };
  const written = await put(Buffer.from(JSON.stringify(manifest)));
  index.manifests.push({ ...desc, ...written, annotations: { ...desc.annotations, 'org.opencontainers.image.ref.name': to } });
  await fs.writeFile(path.join(layout, 'index.json'), JSON.stringify(index));
  return `oci:${layout}:${to}`;
}

/** Containers runc still knows under a state dir's runc root. */
async function runcContainers(stateDir: string): Promise<string[]> {
  const { stdout } = await execFileAsync('runc', ['--root', path.join(stateDir, 'runc'), 'list', '-q']).catch(() => ({ stdout: '' }));
  return stdout.split('\n').filter(Boolean);
}


async function supervisorPids(stateDir: string, runId: string): Promise<number[]> {
  const record = JSON.parse(await fs.readFile(path.join(stateDir, 'runs', runId, 'run.json'), 'utf8')) as { runnables: Record<string, { instances: Array<{ supervisorPid?: number }> }> };
  return Object.values(record.runnables).flatMap((r) => r.instances.map((i) => i.supervisorPid ?? 0)).filter((p) => p > 0);
}

describe('local runtime hardening (issue 13)', () => {
  let probe: ProbeImage;
  let work: string;
  let stateDir: string;
  let runtime: LocalRuntime;
  let runner: TwillRunner;
  const runs = new StartedRuns(() => runner);
  const start = (input: AppSpecInput) => runs.start(input);
  /** The CLI's environment: this state dir, and no WEFT_RUNTIME (the run commands find a local run by themselves). */
  const env = (extra: Record<string, string> = {}) => ({ env: { WEFT_LOCAL_STATE_DIR: stateDir, WEFT_LOCAL_MODE: 'runc', WEFT_RUNTIME: undefined, ...extra }, timeoutMs: 120_000 });
  before(async () => {
    probe = await buildProbeImage();
    work = await tempDir('weft-local-hardening-');
    stateDir = path.join(work, 'state');
    // An existing state dir with the loose mode older versions left: it must be tightened.
    await fs.mkdir(stateDir, { mode: 0o755 });
    await fs.chmod(stateDir, 0o755);
    runtime = await createLocalRuntime({ stateDir, mode: 'runc' });
    runner = await createRunner({ runtime: 'local', stateDir, mode: 'runc' });
  });

  after(async () => {
    await runs.endAll(runtime);
    await runner?.close();
    await runtime?.close();
    await probe?.remove();
    if (work) await fs.rm(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }); // supervisors may still be finishing
  });

  test('finding 4: a run whose image cannot be pulled or unpacked is recorded FAILED with its reason; the CLI exits non-zero', { timeout: 180_000 }, async () => {
    // Through the API: the controller, status and list all see the failed run.
    const missing = await start({ name: 'hd-missing', runnables: [{ name: 'job', kind: 'batch', image: `oci:${path.join(work, 'nope')}:x` }] });
    assert.equal(missing.state, 'FAILED');
    assert.equal(missing.status.reason, 'ErrImagePull');
    const recorded = await runtime.status(missing.runId);
    assert.equal(recorded?.state, 'FAILED', 'status finds the run that never started');
    assert.equal(recorded?.reason, 'ErrImagePull');
    assert.match(recorded?.message ?? '', /cannot pull image/);
    assert.equal((await missing.awaitTerminated(10_000)).state, 'FAILED');
    assert.ok((await runtime.list()).some((s) => s.runId === missing.runId));

    // Through the CLI: an image that pulls but cannot be unpacked.
    const bad = await unpackableImage(path.join(work, 'bad-image'));
    const yaml = path.join(work, 'bad.yaml');
    await fs.writeFile(yaml, `name: hd-unpack\nrunnables:\n  - name: job\n    kind: batch\n    image: ${bad}\n`);
    const json = await weft(['run', yaml, '--runtime', 'local', '--json'], env());
    assert.notEqual(json.code, 0, `weft run exits non-zero when the run could not start: ${json.stdout}`);
    const printed = JSON.parse(json.stdout) as { runId: string; state: string; reason?: string; message?: string };
    assert.equal(printed.state, 'FAILED');
    assert.equal(printed.reason, 'ErrImageUnpack');
    assert.match(printed.message ?? '', /cannot unpack image/);
    const status = await weft(['status', printed.runId, '--runtime', 'local', '--json'], env());
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).state, 'FAILED');
    assert.equal(JSON.parse(status.stdout).reason, 'ErrImageUnpack');
    // --wait returns (it used to follow a run that did not exist forever), non-zero.
    const waited = await weft(['run', yaml, '--runtime', 'local', '--wait'], env());
    assert.equal(waited.code, 1);
    assert.match(waited.stderr, /failed: run hd-unpack-[0-9a-z]+ \(ErrImageUnpack\): cannot unpack image/);

    // A hostile layer's refusal reaches the user the same way.
    const hostile = await unpackableImage(path.join(work, 'hostile-image'), await tarLayer('../escaped'));
    await fs.writeFile(yaml, `name: hd-hostile\nrunnables:\n  - name: job\n    kind: batch\n    image: ${hostile}\n`);
    const refused = await weft(['run', yaml, '--runtime', 'local'], env());
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /failed: run hd-hostile-[0-9a-z]+ \(ErrImageUnpack\): cannot unpack image .*\.\./);
  });

  test('finding 8: restarting an instance while others read the status does not fail the run; kill leaves nothing behind', { timeout: 240_000 }, async () => {
    const c = await start({
      name: 'hd-restart',
      stopTimeout: '10s',
      runnables: [{ name: 'web', kind: 'service', image: probe.reference, instances: 2, args: ['service'], ports: [{ name: 'http', port: 18281 }] }],
    });
    await c.onRunning();
    await waitFor('2 instances running', async () => ((await runtime.status(c.runId))?.runnables[0].running === 2 ? true : undefined));
    // A second runtime stands for another weft process (`weft status` in a shell) reading
    // the run all through the restart, including between the old attempt's end and the new start.
    const reader = await createLocalRuntime({ stateDir, mode: 'runc' });
    const seen: RunStatus[] = [];
    let restarting = true;
    const reads = (async () => {
      while (restarting) {
        const s = await reader.status(c.runId);
        if (s) seen.push(s);
      }
    })();
    try {
      await c.restartInstances('web', ['1']);
    } finally {
      restarting = false;
      await reads;
      await reader.close();
    }
    assert.ok(seen.length > 0);
    const ended = seen.filter((s) => isTerminal(s.state));
    assert.deepEqual(ended.map((s) => `${s.state}: ${s.message}`), [], 'no read during the restart saw the run end');
    assert.ok(seen.some((s) => s.runnables[0].instances.some((i) => i.id === '1' && i.reason === 'Restarting')), 'the restarting instance is reported as such');
    const back = await waitFor('instance 1 back', async () => {
      const s = await runtime.status(c.runId);
      return s && s.runnables[0].running === 2 && s.runnables[0].instances.find((i) => i.id === '1')?.restarts === 1 ? s : undefined;
    });
    assert.equal(back.state, 'RUNNING');
    // RUNNING means the process runs, not that it listens (no readiness probe here): wait for
    // the restarted instance to say it listens before dialling it.
    await waitForLogs(c, 'the second start of instance 1 listening', (l) => l.filter((x) => x.startsWith('[web/1] listening on')).length === 2);
    // Both answer on their published ports, the restarted one included.
    const endpoints = await c.discoverService('http');
    assert.deepEqual((await Promise.all(endpoints.map((e) => readLineWhenListening(e.host, e.port)))).sort(), ['instance 0', 'instance 1']);

    const pids = await supervisorPids(stateDir, c.runId);
    assert.equal(pids.length, 2);
    await c.kill();
    assert.equal((await c.awaitTerminated(60_000)).state, 'KILLED');
    await waitFor('every supervisor and container of the run gone', async () =>
      pids.every((p) => !isAlive(p)) && !(await runcContainers(stateDir)).some((id) => id.startsWith(`weft-${c.runId}-`)) ? true : undefined,
    );
  });

  test('finding 8: kill on a run recorded terminal still ends its leftover instances', { timeout: 180_000 }, async () => {
    const c = await start({ name: 'hd-leftover', stopTimeout: '10s', runnables: [{ name: 'web', kind: 'service', image: probe.reference, args: ['service'] }] });
    await c.onRunning();
    const [pid] = await supervisorPids(stateDir, c.runId);
    // A record that says FAILED while its container still runs: what the restart race
    // used to leave (and what a crash between recording and cleaning up can leave).
    const file = path.join(stateDir, 'runs', c.runId, 'run.json');
    const record = JSON.parse(await fs.readFile(file, 'utf8'));
    record.final = { state: 'FAILED', reason: 'Error', message: 'recorded by hand', finishedAt: new Date().toISOString() };
    await fs.writeFile(file, JSON.stringify(record));
    assert.equal((await runtime.status(c.runId))?.state, 'FAILED');
    assert.ok(isAlive(pid), 'the leftover supervisor runs');
    await runtime.kill(c.runId);
    await waitFor('the leftover supervisor and container gone', async () =>
      !isAlive(pid) && !(await runcContainers(stateDir)).some((id) => id.startsWith(`weft-${c.runId}-`)) ? true : undefined,
    );
  });

  test('finding 9: the state directory and the files holding env values are private (0700/0600)', { timeout: 180_000 }, async () => {
    const c = await runner
      .prepare(parseAppSpec({ name: 'hd-private', runnables: [{ name: 'job', kind: 'batch', image: probe.reference, args: ['batch'], env: { DB_PASSWORD: 's3cret-value' } }] }))
      .withFiles([{ name: 'token.txt', data: 'another secret' }])
      .start();
    runs.track(c);
    assert.equal((await c.awaitTerminated(60_000)).state, 'COMPLETED');
    const mode = async (p: string) => (await fs.stat(path.join(stateDir, p))).mode & 0o777;
    const runDir = path.join('runs', c.runId);
    const config = path.join(runDir, 'instances', 'job-0', 'bundle', 'config.json');
    assert.ok((await fs.readFile(path.join(stateDir, config), 'utf8')).includes('DB_PASSWORD=s3cret-value'), 'the bundle holds the env value');
    assert.equal(await mode('.'), 0o700, 'the state dir (created 0755 before) is tightened');
    for (const dir of ['runs', runDir, path.join(runDir, 'instances', 'job-0'), path.join(runDir, 'files', 'job')]) assert.equal(await mode(dir), 0o700, dir);
    for (const file of [path.join(runDir, 'run.json'), config, path.join(runDir, 'instances', 'job-0', 'log'), path.join(runDir, 'files', 'job', 'token.txt')]) {
      assert.equal(await mode(file), 0o600, file);
    }
  });

  test("finding 7: containers get podman's defaults: the image's User, a seccomp filter, masked /proc paths, their own read-only cgroups (the JVM sizes its heap from the limit)", { timeout: 180_000 }, async () => {
    const image = await tagWithUser(probe.layout, 'probe', 'probe-user', '1000:1001');
    const c = await runner
      // Under about 200 MB the JVM sizes the heap with MinRAMPercentage (default 50), not MaxRAMPercentage: set both to 75.
      .prepare(parseAppSpec({ name: 'hd-defaults', runnables: [{ name: 'job', kind: 'batch', image, args: ['inspect'], resources: { memory: '160Mi', cpu: '500m' }, env: { JAVA_TOOL_OPTIONS: '-XX:MinRAMPercentage=75' } }] }))
      .withFiles([{ name: 'secret.txt', data: 'for the container user' }])
      .start();
    runs.track(c);
    const end = await c.awaitTerminated(60_000);
    const lines: string[] = [];
    for await (const l of c.logs()) lines.push(l.line);
    const out = lines.join('\n');
    assert.equal(end.state, 'COMPLETED', out);
    const field = (name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(out)?.[1];
    const maxHeap = Number(field('maxHeap'));
    const limit = 160 * 1024 * 1024;
    // 75% of the container's 160Mi (less one survivor space), not a share of the host's memory.
    assert.ok(maxHeap > limit * 0.65 && maxHeap <= limit * 0.75, `max heap ${maxHeap} is about 75% of ${limit}:\n${out}`);
    assert.equal(field('cgroupLimit'), String(limit), 'the container sees its own memory cgroup');
    assert.equal(field('cgroupWritable'), 'false', 'its cgroups are mounted read-only');
    assert.match(out, /^status Uid: 1000 1000 1000 1000$/m, "the image's User");
    assert.match(out, /^status Gid: 1001 1001 1001 1001$/m);
    assert.match(out, /^status Seccomp: 2$/m, 'a seccomp filter is applied');
    assert.equal(field('keys'), '0', '/proc/keys is masked');
    assert.equal(field('files'), 'for the container user', 'the run files are readable by the image user');
  });

  test('finding 7: a private network: announced ports reachable on the host, the host\'s loopback services not reachable from the container; nothing left after', { timeout: 240_000 }, async () => {
    // A service on the host's loopback that a container must not reach.
    const hostService = createServer((socket) => socket.end('host secret\n'));
    await new Promise<void>((resolve) => hostService.listen(0, '127.0.0.1', resolve));
    const hostPort = (hostService.address() as AddressInfo).port;
    const privateState = path.join(work, 'private');
    const privateRunner = await createRunner({ runtime: 'local', stateDir: privateState, mode: 'runc', network: 'private' });
    const privateRuntime = await createLocalRuntime({ stateDir: privateState, mode: 'runc', network: 'private' });
    const hostRunner = await createRunner({ runtime: 'local', stateDir: path.join(work, 'host-network'), mode: 'runc', network: 'host' });
    let service: Controller | undefined;
    try {
      const probeRun = async (runner: TwillRunner) => {
        const c = await runner.prepare(parseAppSpec({ name: 'hd-net', runnables: [{ name: 'job', kind: 'batch', image: probe.reference, args: ['connect', String(hostPort)] }] })).start();
        assert.equal((await c.awaitTerminated(60_000)).state, 'COMPLETED');
        const lines: string[] = [];
        for await (const l of c.logs()) lines.push(l.line);
        return lines.join('\n');
      };
      // The control: on the host's network (the opt-out) the same program reaches it.
      assert.match(await probeRun(hostRunner), /^connect ok$/m);
      assert.match(await probeRun(privateRunner), /^connect failed/m, 'the host loopback is not reachable from a private network');

      service = await privateRunner
        .prepare(parseAppSpec({ name: 'hd-net-svc', stopTimeout: '10s', runnables: [{ name: 'web', kind: 'service', image: probe.reference, instances: 2, args: ['service'], ports: [{ name: 'http', port: 18381 }] }] }))
        .start();
      await service.onRunning();
      const s = await waitFor('2 instances running', async () => {
        const x = await privateRuntime.status(service!.runId);
        return x?.runnables[0].running === 2 ? x : undefined;
      });
      const endpoints = await service.discoverService('http');
      assert.equal(endpoints.length, 2);
      assert.deepEqual((await Promise.all(endpoints.map((e) => readLineWhenListening(e.host, e.port)))).sort(), ['instance 0', 'instance 1'], 'each instance answers on its published port');
      const ids = s.runnables[0].instances.map((i) => i.name!);
      await service.kill();
      assert.equal((await service.awaitTerminated(60_000)).state, 'KILLED');
      await waitFor('network namespaces and port proxies gone', async () => {
        const namespaces = await fs.readdir('/run/netns').catch(() => [] as string[]);
        const proxies = (await execFileAsync('ps', ['-eo', 'args'])).stdout.split('\n').filter((l) => l.includes('port-proxy.js') && l.includes(service!.runId));
        return ids.every((id) => !namespaces.includes(id)) && proxies.length === 0 ? true : undefined;
      });
      for (const e of endpoints) await assert.rejects(readLine(e.host, e.port), 'the published ports are closed');
    } finally {
      if (service) await privateRuntime.kill(service.runId).catch(() => undefined);
      await privateRunner.close();
      await privateRuntime.close();
      await hostRunner.close();
      hostService.close();
    }
  });

  test('finding 9: run commands without --runtime find a local run; an unknown run gets a clear message', { timeout: 120_000 }, async () => {
    const c = await start({ name: 'hd-find', runnables: [{ name: 'job', kind: 'batch', image: probe.reference, args: ['batch', 'found-locally'] }] });
    assert.equal((await c.awaitTerminated(60_000)).state, 'COMPLETED');
    // A kubeconfig whose API server does not answer (loopback port 1): Kubernetes must not be needed.
    const kubeconfig = path.join(work, 'kubeconfig');
    await fs.writeFile(
      kubeconfig,
      'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
    );
    const logs = await weft(['logs', c.runId], env({ KUBECONFIG: kubeconfig }));
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /\[job\/0\] probe batch job\/0 .*args=batch,found-locally/);
    const status = await weft(['status', c.runId, '--json'], env({ KUBECONFIG: kubeconfig }));
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).state, 'COMPLETED');
    const unknown = await weft(['logs', 'hd-nowhere-0000'], env({ KUBECONFIG: kubeconfig }));
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, new RegExp(`no run hd-nowhere-0000 in ${path.join(stateDir, 'runs').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, and Kubernetes could not be asked`));
  });
});
