// What weft does on the Kubernetes API, verb by verb, in one place: the master's Role (the
// deploy/master-rbac.yaml manifest is generated from MASTER_RULES; test/provision/permissions.test.ts
// keeps the file equal to masterRbacManifest()) and the runner ClusterRole that provisioning
// binds tenants' accounts to (RUNNER_RULES: the master's rules plus what the CLI's other features use).
// Regenerate the manifest after a change: node scripts/master-rbac.mjs

export interface RbacRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** A rule with why weft needs it (a comment above the rule in the generated manifest). */
export interface ExplainedRule extends RbacRule {
  why: string;
}

/** The master's least-privilege Role in the namespace its runs go to (docs/master.md, "Least privilege on Kubernetes"). */
export const MASTER_RULES: readonly ExplainedRule[] = [
  {
    why: "The run's root object (spec, stop/suspend/verdict annotations): read one, list+watch all\n(tracker), create at submit, patch annotations, delete on stop/kill.",
    apiGroups: [''],
    resources: ['configmaps'],
    verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'],
  },
  {
    why: 'A Service for runnables with ports and for stateful runnables; removed with the root by the\ngarbage collector (ownerReferences), so never deleted by the master.',
    apiGroups: [''],
    resources: ['services'],
    verbs: ['create'],
  },
  {
    why: 'Instances: list+watch (tracker, stop/restart), patch (commands are pod annotations), delete\n(stop with a grace period, kill, restart). Never create: the workloads make the pods.',
    apiGroups: [''],
    resources: ['pods'],
    verbs: ['list', 'watch', 'patch', 'delete'],
  },
  { why: "The log archive follows every pod's output.", apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
  {
    why: 'Workloads: batch runnables are Jobs (patch: scale, suspend), services are Deployments, stateful\nrunnables StatefulSets (patch: scale); deleted when weft decides a run failed.',
    apiGroups: ['batch'],
    resources: ['jobs'],
    verbs: ['list', 'watch', 'create', 'patch', 'delete'],
  },
  { why: '', apiGroups: ['apps'], resources: ['deployments', 'statefulsets'], verbs: ['list', 'watch', 'create', 'patch', 'delete'] },
  {
    why: 'Leader election between several masters (--leader-election kubernetes): one Lease per election.',
    apiGroups: ['coordination.k8s.io'],
    resources: ['leases'],
    verbs: ['get', 'create', 'update'],
  },
];

/** What a runner account (a tenant running weft's CLI on the cluster) uses beyond the master's rules. */
const RUNNER_EXTRA: readonly ExplainedRule[] = [
  { why: 'weft status/stop read single workloads and pods.', apiGroups: ['batch'], resources: ['jobs'], verbs: ['get'] },
  { why: '', apiGroups: ['apps'], resources: ['deployments', 'statefulsets'], verbs: ['get'] },
  { why: '', apiGroups: [''], resources: ['pods'], verbs: ['get'] },
  { why: 'Run files (withFiles) are ConfigMaps the run owns; Services are read for discovery.', apiGroups: [''], resources: ['services', 'configmaps'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
  { why: "A stateful run's volumes are deleted with it.", apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['get', 'list', 'watch', 'delete'] },
  { why: 'Events explain a pending pod (unschedulable, image pull).', apiGroups: [''], resources: ['events'], verbs: ['get', 'list', 'watch'] },
  { why: 'Leases for leader election and locks (src/coord/kube).', apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
  { why: 'Discovery of service endpoints.', apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
  { why: 'Resource reports (usage of pods).', apiGroups: ['metrics.k8s.io'], resources: ['pods'], verbs: ['get', 'list'] },
];

const VERB_ORDER = ['create', 'get', 'list', 'watch', 'update', 'patch', 'delete'];

/**
 * The union of rules, one rule per API group and set of verbs (resources with the same verbs share it);
 * groups, resources and verbs in a fixed order, so the same rules always give the same objects.
 */
export function mergeRules(rules: readonly RbacRule[]): RbacRule[] {
  const verbs = new Map<string, Set<string>>(); // group \0 resource -> verbs
  for (const r of rules) for (const g of r.apiGroups) for (const res of r.resources) {
    const key = `${g}\u0000${res}`;
    if (!verbs.has(key)) verbs.set(key, new Set());
    for (const v of r.verbs) verbs.get(key)!.add(v);
  }
  const byGroupAndVerbs = new Map<string, RbacRule>();
  for (const [key, set] of verbs) {
    const [group, resource] = key.split('\u0000');
    const sorted = [...set].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    const id = `${group}\u0000${sorted.join(',')}`;
    const rule = byGroupAndVerbs.get(id) ?? { apiGroups: [group], resources: [], verbs: sorted };
    rule.resources.push(resource);
    byGroupAndVerbs.set(id, rule);
  }
  return [...byGroupAndVerbs.values()];
}

function rank(verb: string): number {
  const i = VERB_ORDER.indexOf(verb);
  return i < 0 ? VERB_ORDER.length : i;
}

/**
 * What a weft run needs in its namespace, verb by verb (src/runtime/kube and src/coord/kube):
 * workloads it creates, scales and deletes; pods it watches, annotates (commands), deletes
 * (restartInstances) and reads logs of; Services and ConfigMaps (run files) it owns; Leases for
 * leader election and locks; EndpointSlices for discovery; pod metrics for resource reports.
 * Nothing on Secrets, nothing cluster-wide. The master's rules and the CLI's other features.
 */
export const RUNNER_RULES: readonly RbacRule[] = mergeRules([...MASTER_RULES, ...RUNNER_EXTRA]);

const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;
const comment = (text: string, indent: string) => text.split('\n').map((l) => `${indent}# ${l}`.trimEnd()).join('\n');

/** deploy/master-rbac.yaml: the master's ServiceAccount, its Role (MASTER_RULES, explained) and the RoleBinding, in `namespace`. */
export function masterRbacManifest(namespace = 'weft'): string {
  const rules = MASTER_RULES.map((r) => `${r.why ? `${comment(r.why, '  ')}\n` : ''}  - apiGroups: ${list(r.apiGroups)}\n    resources: ${list(r.resources)}\n    verbs: ${list(r.verbs)}`).join('\n');
  return `# The weft master's least-privilege identity on Kubernetes (docs/master.md, "Least privilege on
# Kubernetes"): a ServiceAccount and a namespaced Role for the namespace its runs go to. Nothing
# cluster-wide: no nodes, no secrets, no pods/exec, no creating pods directly (Jobs, Deployments
# and StatefulSets do that). Every verb here is one the master uses; test/master/kube.test.ts runs
# the master on this account's token and compares the granted rules with this file.
#
# Generated from MASTER_RULES in src/provision/permissions.ts (node scripts/master-rbac.mjs);
# test/provision/permissions.test.ts fails when this file and the rules differ.
#
# Install into the namespace of the runs (replace "${namespace}" in the three namespace fields):
#   sed 's/namespace: ${namespace}$/namespace: <ns>/' deploy/master-rbac.yaml | kubectl apply -f -
#   kubectl -n <ns> create token weft-master     # a short-lived token for the master's kubeconfig
apiVersion: v1
kind: ServiceAccount
metadata:
  name: weft-master
  namespace: ${namespace}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: weft-master
  namespace: ${namespace}
rules:
${rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: weft-master
  namespace: ${namespace}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: weft-master
subjects:
  - kind: ServiceAccount
    name: weft-master
    namespace: ${namespace}
`;
}
