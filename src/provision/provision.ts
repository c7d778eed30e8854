// provision / status / deprovision: the provisioner's steps and the initialize hooks, each
// recorded in the journal before it runs. A provisioning killed in the middle resumes after
// its last finished step; a finished one run again re-applies every hook, which changes
// nothing (server-side apply of the same objects).
import { randomBytes } from 'node:crypto';
import { AppsV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import bcrypt from 'bcryptjs';
import { ObjectClient } from './apply.js';
import { defaultJournalDir, Journal, type JournalRecord } from './journal.js';
import { rbacObjects, REGISTRY_CREDENTIALS, REGISTRY_NAME, REGISTRY_PORT, registryObjects, tenantObjects, WEFT_NAMESPACE, type Obj, type RegistryCredentials } from './objects.js';
import { ProvisionError, provisionerFor } from './provisioners.js';
import { DEFAULT_POLLING, type ClusterConfig, type ClusterHealth, type PollingStrategy } from './types.js';

export interface ProvisionOptions {
  cluster: string;
  config: ClusterConfig;
  /** Where journals live (default ${XDG_STATE_HOME:-~/.local/state}/weft/clusters). */
  journalDir?: string;
  polling?: PollingStrategy;
  log?: (line: string) => void;
}

export interface StepReport {
  name: string;
  result: 'ran' | 'skipped';
}

export interface RegistryReport {
  /** host:port the nodes pull from (the Service's ClusterIP). */
  address: string;
  service: string;
  /** Where pushers find the credentials. */
  credentialsSecret: string;
  nodePull?: string;
}

export interface ProvisionReport {
  cluster: string;
  provisioner: string;
  resumed: boolean;
  steps: StepReport[];
  health: ClusterHealth;
  tenants: string[];
  registry?: RegistryReport;
}

/** Polls `check` with the strategy until it returns a value; fails with the last reason. */
export async function poll<T>(what: string, strategy: PollingStrategy, check: () => Promise<{ done: T } | { reason: string }>): Promise<T> {
  const deadline = Date.now() + strategy.timeoutMs;
  let interval = strategy.intervalMs;
  for (;;) {
    const result = await check();
    if ('done' in result) return result.done;
    if (Date.now() + interval > deadline) throw new ProvisionError(`${what} within ${Math.round(strategy.timeoutMs / 1000)} s: ${result.reason}`);
    await new Promise((r) => setTimeout(r, interval));
    interval = Math.min(strategy.maxIntervalMs, interval * strategy.factor);
  }
}

/** The in-cluster registry's credentials, from its Secret. */
export async function registryCredentialsOf(kc: KubeConfig): Promise<RegistryCredentials> {
  const found = await readRegistryCredentials(kc);
  if (!found) throw new ProvisionError(`no Secret ${WEFT_NAMESPACE}/${REGISTRY_CREDENTIALS}: provision the cluster with --registry-image first`);
  return found;
}

async function readRegistryCredentials(kc: KubeConfig): Promise<RegistryCredentials | undefined> {
  const core = kc.makeApiClient(CoreV1Api);
  try {
    const secret = await core.readNamespacedSecret({ name: REGISTRY_CREDENTIALS, namespace: WEFT_NAMESPACE });
    const get = (k: string) => Buffer.from(secret.data?.[k] ?? '', 'base64').toString('utf8');
    if (get('username') && get('password') && get('htpasswd')) return { username: get('username'), password: get('password'), htpasswd: get('htpasswd') };
    return undefined;
  } catch (error) {
    if ((error as { code?: number }).code === 404) return undefined;
    throw new ProvisionError(`cannot read ${WEFT_NAMESPACE}/${REGISTRY_CREDENTIALS}: ${(error as Error).message}`);
  }
}

/** The kubeconfig of a provisioned cluster (from its journal). */
export async function clusterKubeConfig(options: { cluster: string; journalDir?: string }): Promise<KubeConfig> {
  const journal = await Journal.open(options.journalDir ?? defaultJournalDir(), options.cluster);
  if (!journal.current) throw new ProvisionError(`no cluster named ${options.cluster} was provisioned here: run weft cluster provision ${options.cluster} first`);
  return provisionerFor(journal.current.config.provisioner).kubeConfig(journal.current.config);
}

/** The registry's push credentials: the existing Secret's (so re-provisioning changes nothing), else new ones. */
async function registryCredentials(kc: KubeConfig): Promise<RegistryCredentials> {
  const existing = await readRegistryCredentials(kc);
  if (existing) return existing;
  const username = 'weft';
  const password = randomBytes(24).toString('base64url');
  return { username, password, htpasswd: `${username}:${await bcrypt.hash(password, 10)}\n` };
}

const NO_CREDENTIALS: RegistryCredentials = { username: '', password: '', htpasswd: '' };

/** Every object the hooks of this config make (what status checks and deprovision removes). */
export function hookObjects(cluster: string, config: ClusterConfig): Array<{ hook: string; objects: Obj[] }> {
  const out: Array<{ hook: string; objects: Obj[] }> = [];
  if (config.rbac) out.push({ hook: 'rbac', objects: rbacObjects(cluster) });
  for (const t of config.tenants) out.push({ hook: `tenant:${t.name}`, objects: tenantObjects(cluster, t) });
  if (config.registry) out.push({ hook: 'registry', objects: registryObjects(cluster, config.registry, NO_CREDENTIALS).slice(1) });
  return out;
}

/** Test hook: SIGKILL this process right after the named step is recorded done (proves resume). */
function killPoint(step: string): void {
  if (process.env.WEFT_PROVISION_KILL_AFTER === step) process.kill(process.pid, 'SIGKILL');
}

/** Runs journal steps with progress lines, collecting what each did for the report. */
function journalStepper(journal: Journal, steps: StepReport[], log: (line: string) => void) {
  return async (name: string, run: () => Promise<void>): Promise<void> => {
    const result = await journal.step(name, async () => {
      log(`step ${name}`);
      await run();
    });
    if (result === 'skipped') log(`step ${name}: done before, skipped`);
    steps.push({ name, result });
    killPoint(name);
  };
}

export async function provision(options: ProvisionOptions): Promise<ProvisionReport> {
  const log = options.log ?? (() => undefined);
  const polling = options.polling ?? DEFAULT_POLLING;
  const provisioner = provisionerFor(options.config.provisioner);
  const journal = await Journal.open(options.journalDir ?? defaultJournalDir(), options.cluster);
  const { resumed } = await journal.begin(options.cluster, options.config, 'provisioning');
  if (resumed) log(`resuming the unfinished provisioning of ${options.cluster} (journal ${journal.file})`);
  const steps: StepReport[] = [];
  const step = journalStepper(journal, steps, log);

  let kc: KubeConfig | undefined;
  await step('create', async () => {
    kc = await provisioner.create(options.config, log);
  });
  kc ??= provisioner.kubeConfig(options.config);
  const cluster = kc;
  // Always checked, also on resume: the cluster may have gone away meanwhile.
  const health = await poll<ClusterHealth>('the cluster did not become ready', polling, async () => {
    const h = await provisioner.status(options.config);
    return h.state === 'READY' ? { done: h } : { reason: h.message };
  });
  const client = new ObjectClient(cluster);
  if (options.config.rbac) await step('rbac', () => client.apply(rbacObjects(options.cluster)));
  for (const tenant of options.config.tenants) await step(`tenant:${tenant.name}`, () => client.apply(tenantObjects(options.cluster, tenant)));

  let registry: RegistryReport | undefined;
  if (options.config.registry) {
    const config = options.config.registry;
    await step('registry', async () => {
      const credentials = await registryCredentials(cluster);
      await client.apply(registryObjects(options.cluster, config, credentials));
      const apps = cluster.makeApiClient(AppsV1Api);
      await poll(`the registry StatefulSet ${WEFT_NAMESPACE}/${REGISTRY_NAME} did not become ready`, polling, async () => {
        const s = await apps.readNamespacedStatefulSet({ name: REGISTRY_NAME, namespace: WEFT_NAMESPACE });
        return (s.status?.readyReplicas ?? 0) >= 1 ? { done: true } : { reason: `${s.status?.readyReplicas ?? 0}/1 ready` };
      });
    });
    const service = await cluster.makeApiClient(CoreV1Api).readNamespacedService({ name: REGISTRY_NAME, namespace: WEFT_NAMESPACE });
    const address = `${service.spec?.clusterIP}:${REGISTRY_PORT}`;
    let nodePull: string | undefined;
    await step('registry-node-pull', async () => {
      nodePull = await provisioner.configureNodePull(options.config, address);
      log(nodePull);
    });
    registry = { address, service: `${WEFT_NAMESPACE}/${REGISTRY_NAME}`, credentialsSecret: `${WEFT_NAMESPACE}/${REGISTRY_CREDENTIALS}`, nodePull };
  }
  await journal.finish('ready');
  return { cluster: options.cluster, provisioner: provisioner.name, resumed, steps, health, tenants: options.config.tenants.map((t) => t.name), registry };
}

export interface ClusterStatusReport {
  cluster: string;
  phase: JournalRecord['phase'] | 'unknown';
  provisioner?: string;
  health?: ClusterHealth;
  /** Each hook: present when every object it makes exists. */
  hooks: Array<{ hook: string; present: number; expected: number; missing: string[] }>;
  steps: JournalRecord['steps'];
}

export async function clusterStatus(options: { cluster: string; journalDir?: string }): Promise<ClusterStatusReport> {
  const journal = await Journal.open(options.journalDir ?? defaultJournalDir(), options.cluster);
  const record = journal.current;
  if (!record) return { cluster: options.cluster, phase: 'unknown', hooks: [], steps: [] };
  const provisioner = provisionerFor(record.config.provisioner);
  const health = await provisioner.status(record.config);
  const hooks: ClusterStatusReport['hooks'] = [];
  if (health.state === 'READY') {
    const client = new ObjectClient(provisioner.kubeConfig(record.config));
    for (const { hook, objects } of hookObjects(options.cluster, record.config)) {
      const missing: string[] = [];
      for (const o of objects) if (!(await client.read(o))) missing.push(`${o.kind} ${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name}`);
      hooks.push({ hook, present: objects.length - missing.length, expected: objects.length, missing });
    }
  }
  return { cluster: options.cluster, phase: record.phase, provisioner: record.config.provisioner, health, hooks, steps: record.steps };
}

export interface DeprovisionReport {
  cluster: string;
  resumed: boolean;
  steps: StepReport[];
}

export async function deprovision(options: {
  cluster: string;
  journalDir?: string;
  log?: (line: string) => void;
  /** Remove what the hooks made but leave the cluster itself running (testenv). */
  keepCluster?: boolean;
}): Promise<DeprovisionReport> {
  const log = options.log ?? (() => undefined);
  const journal = await Journal.open(options.journalDir ?? defaultJournalDir(), options.cluster);
  const record = journal.current;
  if (!record) throw new ProvisionError(`no cluster named ${options.cluster} was provisioned here (no journal in ${options.journalDir ?? defaultJournalDir()}): see weft cluster status`);
  const config = record.config;
  const provisioner = provisionerFor(config.provisioner);
  const { resumed } = await journal.begin(options.cluster, config, 'deprovisioning');
  const steps: StepReport[] = [];
  const step = journalStepper(journal, steps, log);
  const health = await provisioner.status(config);
  if (health.state === 'READY') {
    const client = new ObjectClient(provisioner.kubeConfig(config));
    // Reverse order of provisioning: the registry, tenants, then weft's own namespace and roles.
    if (config.registry) {
      const service = await client.read({ apiVersion: 'v1', kind: 'Service', metadata: { name: REGISTRY_NAME, namespace: WEFT_NAMESPACE } });
      const ip = (service?.spec as { clusterIP?: string } | undefined)?.clusterIP;
      await step('registry-node-pull', async () => {
        if (ip) await provisioner.removeNodePull(config, `${ip}:${REGISTRY_PORT}`);
      });
      await step('registry', () =>
        // The namespace goes with weft's RBAC below.
        client.delete(registryObjects(options.cluster, config.registry!, NO_CREDENTIALS).slice(1)),
      );
    }
    for (const tenant of [...config.tenants].reverse()) await step(`tenant:${tenant.name}`, () => client.delete(tenantObjects(options.cluster, tenant)));
    if (config.rbac || config.registry) await step('rbac', () => client.delete(rbacObjects(options.cluster)));
  } else if (health.state === 'NOT_READY') {
    throw new ProvisionError(`cannot deprovision ${options.cluster}: ${health.message}`);
  }
  if (!options.keepCluster) await step('delete', () => provisioner.delete(config, log));
  await journal.remove();
  return { cluster: options.cluster, resumed, steps };
}
