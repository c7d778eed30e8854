// The RBAC rules in one place (src/provision/permissions.ts): deploy/master-rbac.yaml is generated
// from MASTER_RULES and must be current; the runner role provisioning creates contains every verb the
// master has (it is built from them) and nothing on Secrets or cluster-wide.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { MASTER_RULES, masterRbacManifest, mergeRules, RUNNER_RULES, type RbacRule } from '../../src/provision/index.js';
import { repoRoot } from '../twill/fixtures/probe-image.js';

const triples = (rules: readonly RbacRule[]) => [...new Set(rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g || 'core'}/${res}:${v}`)))))].sort();

test('deploy/master-rbac.yaml is what MASTER_RULES generate (regenerate: node scripts/master-rbac.mjs)', () => {
  const file = readFileSync(path.join(repoRoot, 'deploy', 'master-rbac.yaml'), 'utf8');
  assert.equal(file, masterRbacManifest(), 'deploy/master-rbac.yaml differs from MASTER_RULES: run npx tsc -p tsconfig.json && node scripts/master-rbac.mjs');
  const role = parseAllDocuments(file)
    .map((d) => d.toJS() as { kind: string; rules?: RbacRule[] })
    .find((d) => d.kind === 'Role');
  assert.deepEqual(triples(role!.rules!), triples(MASTER_RULES), 'the parsed manifest grants exactly MASTER_RULES');
});

test("the runner role holds every verb of the master's and grants nothing on Secrets or cluster-wide", () => {
  const runner = triples(RUNNER_RULES);
  for (const t of triples(MASTER_RULES)) assert.ok(runner.includes(t), t);
  assert.ok(!runner.some((t) => t.includes('/secrets:') || t.includes('*')));
  assert.deepEqual(triples(mergeRules(RUNNER_RULES)), runner, 'merging is idempotent');
  // One rule per API group and verb set: a resource appears once per group.
  const seen = RUNNER_RULES.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.map((res) => `${g}/${res}`)));
  assert.equal(new Set(seen).size, seen.length);
});
