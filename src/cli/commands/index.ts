import type { Command } from 'commander';

// Each capability adds one module here that registers its commands.
const registrars: Array<(program: Command) => void> = [];

export function registerCommands(program: Command): void {
  for (const register of registrars) register(program);
}
