import type { Command } from 'commander';
import { register as registerBase } from './base.js';
import { register as registerBuild } from './build.js';
import { register as registerCoord } from './coord.js';
import { register as registerCopy } from './copy.js';
import { register as registerRegistry } from './registry.js';
import { register as registerRun } from './run.js';

// Each capability adds one module here that registers its commands.
const registrars: Array<(program: Command) => void> = [registerBuild, registerCopy, registerBase, registerRegistry, registerRun, registerCoord];

export function registerCommands(program: Command): void {
  for (const register of registrars) register(program);
}
