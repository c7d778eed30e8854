// Provisioner hooks: bring up (or find) a cluster and make it ready for weft: weft's RBAC,
// tenants, and weft's registry the nodes pull from. See docs/provision.md.
export * from './types.js';
export { provision, clusterStatus, deprovision, registryCredentialsOf, clusterKubeConfig, hookObjects, poll, type ProvisionOptions, type ProvisionReport, type ClusterStatusReport, type DeprovisionReport, type RegistryReport, type StepReport } from './provision.js';
export { provisionerFor, testenvState, ProvisionError } from './provisioners.js';
export { Journal, JournalError, defaultJournalDir, type JournalRecord, type JournalStep } from './journal.js';
export { rbacObjects, tenantObjects, registryObjects, RUNNER_ROLE, RUNNER_ACCOUNT, WEFT_NAMESPACE, REGISTRY_NAME, REGISTRY_PORT, REGISTRY_CREDENTIALS, CLUSTER_LABEL } from './objects.js';
export { ObjectClient, ApplyError } from './apply.js';
export { MASTER_RULES, RUNNER_RULES, mergeRules, masterRbacManifest, type RbacRule, type ExplainedRule } from './permissions.js';
export { forwardToRegistry, type RegistryForward } from './port-forward.js';
