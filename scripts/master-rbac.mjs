#!/usr/bin/env node
// Writes deploy/master-rbac.yaml from MASTER_RULES (src/provision/permissions.ts); run after changing
// the rules (and `npx tsc -p tsconfig.json`). test/provision/permissions.test.ts checks the file is current.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { masterRbacManifest } = await import(path.join(root, 'dist', 'src', 'provision', 'permissions.js'));
const file = path.join(root, 'deploy', 'master-rbac.yaml');
writeFileSync(file, masterRbacManifest());
console.log(`wrote ${path.relative(process.cwd(), file)}`);
