// The two provisioners: `existing` (a kubeconfig context weft does not own) and `testenv`
// (the project's test environment, scripts/k8s-testenv, which weft starts and stops).
import { spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { KubeConfig, VersionApi } from '@kubernetes/client-node';
import { runningInstallation } from '../image/index.js';
import { weftStateDir } from '../common/index.js';
import { loadKubeConfig } from '../kube-client/index.js';
import type { ClusterConfig, ClusterHealth, Provisioner, ProvisionerName } from './types.js';

export class ProvisionError extends Error {
  override name = 'ProvisionError';
}

async function apiHealth(kc: KubeConfig): Promise<ClusterHealth> {
  try {
    const version = await kc.makeApiClient(VersionApi).getCode();
    return { state: 'READY', message: `the API server at ${kc.getCurrentCluster()?.server} answers (${version.gitVersion})`, version: version.gitVersion };
  } catch (error) {
    return { state: 'NOT_READY', message: `the API server at ${kc.getCurrentCluster()?.server} does not answer: ${(error as Error).message}` };
  }
}

class ExistingProvisioner implements Provisioner {
  readonly name = 'existing' as const;

  kubeConfig(config: ClusterConfig): KubeConfig {
    return loadKubeConfig({ kubeconfig: config.kubeconfig, context: config.context });
  }

  async create(config: ClusterConfig, log: (line: string) => void): Promise<KubeConfig> {
    const kc = this.kubeConfig(config);
    log(`using the existing cluster of context ${kc.getCurrentContext()} (${kc.getCurrentCluster()?.server})`);
    return kc;
  }

  status(config: ClusterConfig): Promise<ClusterHealth> {
    return apiHealth(this.kubeConfig(config));
  }

  async configureNodePull(_config: ClusterConfig, address: string): Promise<string> {
    // weft does not own these nodes: say what the cluster's administrator must do.
    return `nodes must be told to pull from http://${address} (plain HTTP): see docs/provision.md for containerd, CRI-O, kind, k3s and managed clusters`;
  }

  async removeNodePull(): Promise<void> {}

  async delete(_config: ClusterConfig, log: (line: string) => void): Promise<void> {
    log('the existing cluster itself is left as it is (weft did not create it)');
  }
}

/** The test environment's state dir: the one recorded at provisioning, else WEFT_K8S_STATE, else its default. */
export function testenvState(config: ClusterConfig, env: NodeJS.ProcessEnv = process.env): string {
  return config.testenvState ?? env.WEFT_K8S_STATE ?? weftStateDir('k8s-testenv');
}

class TestenvProvisioner implements Provisioner {
  readonly name = 'testenv' as const;

  private script(): string {
    const script = path.join(runningInstallation(), 'scripts', 'k8s-testenv');
    if (!existsSync(script)) throw new ProvisionError(`the testenv provisioner needs a weft checkout (no ${script}): use --provisioner existing with a kubeconfig`);
    return script;
  }

  private run(config: ClusterConfig, args: string[], log: (line: string) => void): Promise<string> {
    const script = this.script();
    return new Promise((resolve, reject) => {
      const child = spawn('bash', [script, ...args], { env: { ...process.env, WEFT_K8S_STATE: testenvState(config) }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        for (const line of d.split('\n')) if (line.trim()) log(line.trim());
      });
      child.on('error', (error) => reject(new ProvisionError(`cannot run ${script}: ${error.message}`)));
      child.on('close', (code) =>
        code === 0 ? resolve(out) : reject(new ProvisionError(`scripts/k8s-testenv ${args.join(' ')} failed (exit ${code}): ${err.trim().split('\n').slice(-5).join(' | ')}`)),
      );
    });
  }

  kubeConfig(config: ClusterConfig): KubeConfig {
    const file = path.join(testenvState(config), 'kubeconfig');
    if (!existsSync(file)) throw new ProvisionError(`the test environment has no kubeconfig at ${file}: is it up? (weft cluster provision --provisioner testenv starts it)`);
    const kc = new KubeConfig();
    kc.loadFromFile(file);
    return kc;
  }

  async create(config: ClusterConfig, log: (line: string) => void): Promise<KubeConfig> {
    // `up` is idempotent: an environment already up is only checked. In-cluster networking
    // (kube-proxy, cluster DNS), so that nodes pull through the registry Service's ClusterIP and
    // weft's pods reach the API server the in-cluster way; an environment up without it has its
    // node restarted in that layout (the control plane is kept).
    await this.run(config, ['up', '--real-node', '--in-cluster'], log);
    return this.kubeConfig(config);
  }

  async status(config: ClusterConfig): Promise<ClusterHealth> {
    if (!existsSync(path.join(testenvState(config), 'kubeconfig'))) return { state: 'ABSENT', message: `no test environment in ${testenvState(config)}` };
    return apiHealth(this.kubeConfig(config));
  }

  private hostsFile(config: ClusterConfig, address: string): { dir: string; nodeDir: string } {
    const nodeDir = path.join(testenvState(config), 'node', 'containerd', 'certs.d');
    return { dir: path.join(nodeDir, address), nodeDir };
  }

  async configureNodePull(config: ClusterConfig, address: string): Promise<string> {
    const { dir, nodeDir } = this.hostsFile(config, address);
    if (!existsSync(nodeDir)) return 'the test environment has no real node (kwok nodes pull nothing): nothing to configure';
    await fs.mkdir(dir, { recursive: true });
    // containerd reads certs.d at every pull: no restart needed.
    const toml = `server = "http://${address}"\n[host."http://${address}"]\n  capabilities = ["pull", "resolve"]\n  skip_verify = true\n`;
    await fs.writeFile(path.join(dir, 'hosts.toml'), toml);
    return `the real node's containerd pulls from http://${address} (${path.join(dir, 'hosts.toml')})`;
  }

  async removeNodePull(config: ClusterConfig, address: string): Promise<void> {
    await fs.rm(this.hostsFile(config, address).dir, { recursive: true, force: true });
  }

  async delete(config: ClusterConfig, log: (line: string) => void): Promise<void> {
    await this.run(config, ['down'], log);
  }
}

export function provisionerFor(name: ProvisionerName | string): Provisioner {
  if (name === 'existing') return new ExistingProvisioner();
  if (name === 'testenv') return new TestenvProvisioner();
  throw new ProvisionError(`unknown provisioner "${name}": use existing (a kubeconfig context) or testenv (the project's test environment)`);
}
