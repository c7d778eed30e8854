// Tests of weft's components running as pods on the test environment's real node, with in-cluster
// networking (scripts/k8s-testenv up --real-node --in-cluster, which scripts/test starts): weft's
// own image pushed to the node's registry, the manifests of deploy/ applied with their image,
// namespace and placement replaced, pod logs followed, a container killed through the node's
// containerd.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { testenvState } from '../../src/provision/index.js';
import { mustRun, mustWeft, repoRoot } from '../e2e/harness.js';
import { nodeRegistry, onRealNode } from './real-node.js';
import { toolBinary } from './tools.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Manifest = Record<string, any>;

/** The test environment's state dir; fails unless its real node runs with in-cluster networking. */
export function requireInCluster(): string {
  nodeRegistry();
  const state = testenvState({ provisioner: 'testenv', rbac: false, tenants: [] });
  if (!existsSync(path.join(state, 'node', 'in-cluster'))) {
    throw new Error(`the test environment in ${state} has no real node with in-cluster networking (pods could not reach the API server): start it with scripts/k8s-testenv up --real-node --in-cluster, as scripts/test does`);
  }
  return state;
}

export function kubectlPath(): string {
  return toolBinary('kubernetes', 'bin/kubectl', 'scripts/k8s/build.sh');
}

export function kubectl(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(kubectlPath(), args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(' ')} exited ${code}: ${err.trim()}`))));
    child.stdin.end(input ?? '');
  });
}

let selfImage: Promise<string> | undefined;

/** weft's own image (`weft self-image`), pushed once per test process to the node's registry. */
export function pushSelfImage(): Promise<string> {
  selfImage ??= (async () => {
    const image = `${nodeRegistry()}/weft/self:${randomBytes(3).toString('hex')}`;
    await mustWeft(['self-image', '--output', `docker://${image}`, '--json']);
    return image;
  })();
  return selfImage;
}

/**
 * The objects of a manifest under deploy/, as a user would install them: namespace "weft" and
 * image "weft:latest" replaced; pod templates placed on the real node (its label and taint).
 */
export function deployManifest(file: string, options: { namespace: string; image: string }): Manifest[] {
  const text = readFileSync(path.join(repoRoot, 'deploy', file), 'utf8');
  const objects = parseAllDocuments(text)
    .map((d) => d.toJSON() as Manifest | null)
    .filter((o): o is Manifest => !!o);
  for (const o of objects) {
    if (o.metadata?.namespace === 'weft') o.metadata.namespace = options.namespace;
    for (const s of o.subjects ?? []) if (s.namespace === 'weft') s.namespace = options.namespace;
    const pod = o.spec?.template?.spec;
    if (pod) {
      pod.nodeSelector = { ...pod.nodeSelector, ...onRealNode.nodeSelector };
      pod.tolerations = [...(pod.tolerations ?? []), ...(onRealNode.tolerations ?? [])];
      for (const c of [...(pod.containers ?? []), ...(pod.initContainers ?? [])]) if (c.image === 'weft:latest') c.image = options.image;
    }
  }
  return objects;
}

/** Replaces the value after `flag` in a container's args (the flag must be there). */
export function setArg(container: Manifest, flag: string, value: string): void {
  const args = container.args as string[];
  const i = args.indexOf(flag);
  if (i < 0) throw new Error(`the manifest's container ${container.name} has no ${flag} argument`);
  args[i + 1] = value;
}

export async function applyObjects(kubeconfig: string, objects: Manifest[]): Promise<void> {
  await kubectl(['--kubeconfig', kubeconfig, 'apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
}

/** Follows a pod's log (`kubectl logs -f`) from its start until the container ends or stop(); with `previous`, reads the log of its previous container once. */
export class LogFollower {
  private child: ChildProcess;
  text = '';
  readonly ended: Promise<void>;
  constructor(kubeconfig: string, namespace: string, readonly pod: string, previous = false) {
    this.child = spawn(kubectlPath(), ['--kubeconfig', kubeconfig, 'logs', previous ? '--previous' : '-f', '-n', namespace, pod], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => (this.text += d));
    this.ended = new Promise((resolve) => this.child.on('close', () => resolve()));
  }
  lines(): string[] {
    return this.text.split('\n').filter((l) => l.trim());
  }
  stop(): void {
    this.child.kill('SIGTERM');
  }
}

/** SIGKILLs a container's main process through the real node's containerd: a crash, no shutdown hook runs. */
export async function killContainer(state: string, containerID: string): Promise<void> {
  const id = containerID.replace(/^containerd:\/\//, '');
  await mustRun('ctr', ['--address', path.join(state, 'node', 'containerd', 'containerd.sock'), '--namespace', 'k8s.io', 'tasks', 'kill', '--signal', 'SIGKILL', id]);
}
