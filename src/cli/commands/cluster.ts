// weft cluster provision|status|deprovision: parsing and printing only; the work is in src/provision.
import { InvalidArgumentError, type Command } from 'commander';
import type { ClusterConfig, TenantSpec } from '../../provision/index.js';
import { printJson, progress } from '../output.js';

/** --tenant NAME[:pods=N,cpu=Q,memory=Q,default-cpu=Q,default-memory=Q] */
export function parseTenant(value: string, previous: TenantSpec[] = []): TenantSpec[] {
  const [name, settings] = value.split(':', 2);
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) throw new InvalidArgumentError(`tenant "${name}" is not a valid namespace name (lower-case letters, digits, '-')`);
  const tenant: TenantSpec = { name };
  for (const pair of settings ? settings.split(',') : []) {
    const [key, v] = pair.split('=', 2);
    if (!v) throw new InvalidArgumentError(`tenant ${name}: "${pair}" is not key=value`);
    switch (key) {
      case 'pods':
        if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`tenant ${name}: pods must be a whole number, got "${v}"`);
        tenant.quota = { ...tenant.quota, pods: Number(v) };
        break;
      case 'cpu':
        tenant.quota = { ...tenant.quota, cpu: v };
        break;
      case 'memory':
        tenant.quota = { ...tenant.quota, memory: v };
        break;
      case 'default-cpu':
        tenant.defaults = { ...tenant.defaults, cpu: v };
        break;
      case 'default-memory':
        tenant.defaults = { ...tenant.defaults, memory: v };
        break;
      default:
        throw new InvalidArgumentError(`tenant ${name}: unknown setting "${key}" (pods, cpu, memory, default-cpu, default-memory)`);
    }
  }
  if (previous.some((t) => t.name === name)) throw new InvalidArgumentError(`tenant ${name} is given twice`);
  return [...previous, tenant];
}

function keyValue(value: string, previous: Record<string, string>): Record<string, string> {
  const m = /^([^=]+)=(.*)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`"${value}" is not key=value`);
  return { ...previous, [m[1]]: m[2] };
}

function toleration(value: string, previous: Array<{ key: string; operator: 'Exists' | 'Equal'; value?: string; effect: string }>) {
  const m = /^([^=:]+)(?:=([^:]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`"${value}" is not key[=value]:NoSchedule|PreferNoSchedule|NoExecute`);
  return [...previous, m[2] === undefined ? { key: m[1], operator: 'Exists' as const, effect: m[3] } : { key: m[1], operator: 'Equal' as const, value: m[2], effect: m[3] }];
}

export function register(program: Command): void {
  const cluster = program.command('cluster').description('Provision a cluster for weft: RBAC, tenants and an in-cluster registry (idempotent, resumable)');
  cluster
    .command('provision')
    .description('Create (testenv) or check (existing) the cluster, then run the initialize hooks; safe to run again, resumes after a kill')
    .argument('[name]', 'a name for this cluster in weft\'s provisioning journal', 'default')
    .option('--provisioner <name>', 'existing (a kubeconfig context) or testenv (the project\'s test environment)', 'existing')
    .option('--kubeconfig <file>', 'kubeconfig (existing; default: $KUBECONFIG or ~/.kube/config)')
    .option('--context <name>', 'kubeconfig context (existing)')
    .option('--no-rbac', "skip weft's namespace, service account and runner role")
    .option('--tenant <spec>', 'a tenant namespace NAME[:pods=N,cpu=Q,memory=Q,default-cpu=Q,default-memory=Q] (repeatable)', parseTenant, [])
    .option('--registry-image <ref>', "deploy weft's registry with this image (`weft self-image`), pullable by the nodes")
    .option('--registry-cluster-ip <ip>', "a fixed ClusterIP for the registry's Service")
    .option('--registry-storage-class <name>', 'a StorageClass for the registry volume (default: an emptyDir)')
    .option('--registry-node-selector <key=value>', 'run the registry on nodes with this label (repeatable)', keyValue, {})
    .option('--registry-toleration <key[=value]:effect>', 'let the registry run on nodes with this taint (repeatable)', toleration, [])
    .option('--json', 'print the report as JSON')
    .action(async (name: string, opts: { registryNodeSelector: Record<string, string>; registryToleration: Array<{ key: string; operator: 'Exists' | 'Equal'; value?: string; effect: string }>; provisioner: string; kubeconfig?: string; context?: string; rbac: boolean; tenant: TenantSpec[]; registryImage?: string; registryClusterIp?: string; registryStorageClass?: string; json?: boolean }) => {
      const { provision, testenvState } = await import('../../provision/index.js');
      if (opts.provisioner !== 'existing' && opts.provisioner !== 'testenv') throw new Error(`unknown --provisioner "${opts.provisioner}": use existing or testenv`);
      const config: ClusterConfig = {
        provisioner: opts.provisioner,
        kubeconfig: opts.kubeconfig,
        context: opts.context,
        rbac: opts.rbac,
        tenants: opts.tenant,
        registry: opts.registryImage
          ? {
              image: opts.registryImage,
              clusterIP: opts.registryClusterIp,
              storageClass: opts.registryStorageClass,
              nodeSelector: Object.keys(opts.registryNodeSelector).length ? opts.registryNodeSelector : undefined,
              tolerations: opts.registryToleration.length ? opts.registryToleration : undefined,
            }
          : undefined,
      };
      if (config.provisioner === 'testenv') config.testenvState = testenvState(config);
      const report = await provision({ cluster: name, config, log: (line) => progress(line) });
      if (opts.json) printJson(report);
      else {
        progress(`${report.cluster}: ready (${report.health.message}); steps: ${report.steps.map((s) => `${s.name}${s.result === 'skipped' ? ' (done before)' : ''}`).join(', ')}`);
        if (report.registry) process.stdout.write(`registry ${report.registry.address} (credentials in Secret ${report.registry.credentialsSecret})\n`);
      }
    });
  cluster
    .command('status')
    .description("What weft provisioned on a cluster, and whether each hook's objects are there")
    .argument('[name]', 'the cluster name used at provisioning', 'default')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean }) => {
      const { clusterStatus } = await import('../../provision/index.js');
      const report = await clusterStatus({ cluster: name });
      if (opts.json) return printJson(report);
      if (report.phase === 'unknown') {
        process.stdout.write(`${name}: not provisioned here\n`);
        return;
      }
      process.stdout.write(`${name}: ${report.phase} (${report.provisioner}); ${report.health?.message}\n`);
      for (const h of report.hooks) process.stdout.write(`  ${h.hook}: ${h.present}/${h.expected}${h.missing.length ? ` missing ${h.missing.join(', ')}` : ''}\n`);
    });
  cluster
    .command('deprovision')
    .description('Remove what provisioning made (and stop a testenv cluster); resumes after a kill')
    .argument('[name]', 'the cluster name used at provisioning', 'default')
    .option('--keep-cluster', 'remove what the hooks made but leave the cluster itself running (testenv)')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean; keepCluster?: boolean }) => {
      const { deprovision } = await import('../../provision/index.js');
      const report = await deprovision({ cluster: name, keepCluster: opts.keepCluster === true, log: (line) => progress(line) });
      if (opts.json) printJson(report);
      else progress(`${name}: deprovisioned (${report.steps.map((s) => s.name).join(', ')})`);
    });
  cluster
    .command('port-forward')
    .description("Forward a port on 127.0.0.1 to the in-cluster registry (through the API server), so that weft can push to it from outside the cluster")
    .argument('[name]', 'the cluster name used at provisioning', 'default')
    .option('--port <n>', 'local port (default: a free one)')
    .option('--login', "store the registry's credentials (from its Secret) for the forwarded address in $DOCKER_CONFIG/config.json")
    .option('--json', 'print the address as JSON')
    .action(async (name: string, opts: { port?: string; login?: boolean; json?: boolean }) => {
      const { forwardToRegistry, registryCredentialsOf, clusterKubeConfig } = await import('../../provision/index.js');
      const port = opts.port === undefined ? undefined : Number(opts.port);
      if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) throw new Error(`--port must be a port number, got "${opts.port}"`);
      const kc = await clusterKubeConfig({ cluster: name });
      const forward = await forwardToRegistry(kc, { localPort: port });
      if (opts.login) {
        const { login } = await import('../../registry/client/index.js');
        const credentials = await registryCredentialsOf(kc);
        const { storedIn } = await login(forward.address, credentials.username, credentials.password);
        progress(`logged in to ${forward.address} (stored in ${storedIn})`);
      }
      if (opts.json) printJson({ address: forward.address, pod: forward.pod });
      else {
        process.stdout.write(`${forward.address}\n`);
        progress(`forwarding ${forward.address} to pod ${forward.pod}; push with weft build --output docker://${forward.address}/<repo>:<tag>; Ctrl-C stops`);
      }
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await forward.close();
    });
}
