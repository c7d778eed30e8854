import type { Command } from 'commander';

// Each capability adds one entry here: the top-level command names it
// registers and a loader for its module (which exports `register(program)`).
// Modules are imported on demand so that `weft copy` does not load the
// Kubernetes client, pino, yaml, zod, the registry server, ... (see
// docs/registry-client.md, "Start-up").
interface CommandModule {
  names: string[];
  load: () => Promise<{ register: (program: Command) => void }>;
}

const modules: CommandModule[] = [
  { names: ['build'], load: () => import('./build.js') },
  { names: ['copy', 'inspect', 'login', 'logout'], load: () => import('./copy.js') },
  { names: ['base', 'self-image'], load: () => import('./base.js') },
  { names: ['registry'], load: () => import('./registry.js') },
  { names: ['run', 'status', 'logs', 'stop', 'kill', 'scale', 'list'], load: () => import('./run.js') },
  { names: ['coord'], load: () => import('./coord.js') },
  { names: ['master'], load: () => import('./master.js') },
  { names: ['cluster'], load: () => import('./cluster.js') },
];

/**
 * Registers the commands. With `argv` (process.argv) whose first argument names
 * a known command, only the module owning it is loaded; otherwise (help,
 * --version, a typo that commander should suggest a fix for) all of them are.
 */
export async function registerCommands(program: Command, argv?: string[]): Promise<void> {
  const first = argv?.slice(2).find((a) => !a.startsWith('-'));
  const owner = first === undefined ? undefined : modules.find((m) => m.names.includes(first));
  const chosen = owner ? [owner] : modules;
  const loaded = await Promise.all(chosen.map((m) => m.load()));
  for (const { register } of loaded) register(program);
}
