// What the initialize hooks create, as plain Kubernetes objects (pure functions, unit-tested):
// weft's namespace and RBAC, tenants (namespace, quota, limits, service account, role
// binding) and weft's registry (Secret, StatefulSet, Service). Every object carries
// app.kubernetes.io/managed-by=weft and weft.io/cluster, so deprovisioning finds them all.
import type { KubernetesObject } from '@kubernetes/client-node';
import { RUNNER_RULES } from './permissions.js';
import type { RegistryHookConfig, TenantSpec } from './types.js';

export const WEFT_NAMESPACE = 'weft-system';
export const RUNNER_ROLE = 'weft-runner';
export const RUNNER_ACCOUNT = 'weft-runner';
export const REGISTRY_NAME = 'weft-registry';
export const REGISTRY_PORT = 5000;
export const CLUSTER_LABEL = 'weft.io/cluster';
export const HOOK_LABEL = 'weft.io/hook';
export const TENANT_LABEL = 'weft.io/tenant';

export type Obj = KubernetesObject & Record<string, unknown>;

function meta(cluster: string, hook: string, name: string, namespace?: string, extra: Record<string, string> = {}) {
  return {
    name,
    ...(namespace ? { namespace } : {}),
    labels: { 'app.kubernetes.io/managed-by': 'weft', 'app.kubernetes.io/part-of': 'weft', [CLUSTER_LABEL]: cluster, [HOOK_LABEL]: hook, ...extra },
  };
}

/** weft's own namespace, its ServiceAccount, and the runner ClusterRole tenants bind to. */
export function rbacObjects(cluster: string): Obj[] {
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: meta(cluster, 'rbac', WEFT_NAMESPACE) },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(cluster, 'rbac', 'weft', WEFT_NAMESPACE) },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta(cluster, 'rbac', RUNNER_ROLE), rules: RUNNER_RULES },
  ];
}

/** A tenant: its namespace with a quota, default limits, a runner ServiceAccount bound to the runner role in that namespace only. */
export function tenantObjects(cluster: string, tenant: TenantSpec): Obj[] {
  const ns = tenant.name;
  const extra = { [TENANT_LABEL]: ns };
  const hard: Record<string, string> = {};
  if (tenant.quota?.pods !== undefined) hard.pods = String(tenant.quota.pods);
  if (tenant.quota?.cpu) hard['limits.cpu'] = tenant.quota.cpu;
  if (tenant.quota?.memory) hard['limits.memory'] = tenant.quota.memory;
  const defaults: Record<string, string> = {};
  if (tenant.defaults?.cpu) defaults.cpu = tenant.defaults.cpu;
  if (tenant.defaults?.memory) defaults.memory = tenant.defaults.memory;
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: meta(cluster, 'tenants', ns, undefined, extra) },
    { apiVersion: 'v1', kind: 'ResourceQuota', metadata: meta(cluster, 'tenants', 'weft-quota', ns, extra), spec: { hard: Object.keys(hard).length ? hard : { pods: '50' } } },
    {
      apiVersion: 'v1',
      kind: 'LimitRange',
      metadata: meta(cluster, 'tenants', 'weft-limits', ns, extra),
      // With a limits.* quota every container needs limits: the defaults give them one.
      spec: { limits: [{ type: 'Container', default: Object.keys(defaults).length ? defaults : { cpu: '1', memory: '512Mi' } }] },
    },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(cluster, 'tenants', RUNNER_ACCOUNT, ns, extra) },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(cluster, 'tenants', RUNNER_ACCOUNT, ns, extra),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: RUNNER_ROLE },
      subjects: [{ kind: 'ServiceAccount', name: RUNNER_ACCOUNT, namespace: ns }],
    },
  ];
}

export const REGISTRY_CREDENTIALS = `${REGISTRY_NAME}-credentials`;

export interface RegistryCredentials {
  username: string;
  password: string;
  /** The bcrypt htpasswd line of username/password. */
  htpasswd: string;
}

/** weft's registry in weft-system: its credentials Secret, a one-replica StatefulSet with a volume and a readiness probe, a Service. */
export function registryObjects(cluster: string, config: RegistryHookConfig, credentials: RegistryCredentials): Obj[] {
  const labels = { 'app.kubernetes.io/name': REGISTRY_NAME };
  const volume = config.storageClass
    ? undefined
    : { name: 'data', emptyDir: {} };
  const b64 = (v: string) => Buffer.from(v).toString('base64');
  return [
    { apiVersion: 'v1', kind: 'Namespace', metadata: meta(cluster, 'rbac', WEFT_NAMESPACE) },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: meta(cluster, 'registry', REGISTRY_CREDENTIALS, WEFT_NAMESPACE),
      type: 'Opaque',
      // data, not stringData: applying the same bytes again is then a no-op.
      data: { username: b64(credentials.username), password: b64(credentials.password), htpasswd: b64(credentials.htpasswd) },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: meta(cluster, 'registry', REGISTRY_NAME, WEFT_NAMESPACE, labels),
      spec: {
        serviceName: REGISTRY_NAME,
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels: { ...labels, 'app.kubernetes.io/managed-by': 'weft', [CLUSTER_LABEL]: cluster } },
          spec: {
            automountServiceAccountToken: false,
            ...(config.nodeSelector ? { nodeSelector: config.nodeSelector } : {}),
            ...(config.tolerations ? { tolerations: config.tolerations } : {}),
            containers: [
              {
                name: 'registry',
                image: config.image,
                args: ['registry', 'serve', '--root', '/data', '--addr', `0.0.0.0:${REGISTRY_PORT}`, '--htpasswd', '/auth/htpasswd', '--anonymous-pull'],
                ports: [{ name: 'registry', containerPort: REGISTRY_PORT }],
                readinessProbe: { tcpSocket: { port: REGISTRY_PORT }, periodSeconds: 2, failureThreshold: 3 },
                resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '512Mi' } },
                volumeMounts: [
                  { name: 'data', mountPath: '/data' },
                  { name: 'auth', mountPath: '/auth', readOnly: true },
                ],
              },
            ],
            volumes: [...(volume ? [volume] : []), { name: 'auth', secret: { secretName: REGISTRY_CREDENTIALS, items: [{ key: 'htpasswd', path: 'htpasswd' }] } }],
          },
        },
        ...(config.storageClass
          ? {
              volumeClaimTemplates: [
                {
                  metadata: { name: 'data' },
                  spec: { accessModes: ['ReadWriteOnce'], storageClassName: config.storageClass, resources: { requests: { storage: config.storageSize ?? '10Gi' } } },
                },
              ],
            }
          : {}),
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(cluster, 'registry', REGISTRY_NAME, WEFT_NAMESPACE, labels),
      spec: {
        selector: labels,
        ...(config.clusterIP ? { clusterIP: config.clusterIP } : {}),
        ports: [{ name: 'registry', port: REGISTRY_PORT, targetPort: REGISTRY_PORT }],
      },
    },
  ];
}
