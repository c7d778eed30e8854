import { Help, type Command } from 'commander';

// Each capability adds one entry here: the top-level commands it registers
// (name, the term `weft --help` prints and the description) and a loader for
// its module (which exports `register(program)`). Modules are imported on
// demand so that `weft copy` does not load the Kubernetes client, pino, yaml,
// zod, the registry server, ... and `weft --help` / `weft --version` load none
// of them: they get stand-ins built from this table (see docs/benchmarks.md,
// "CLI start-up"). test/cli/start-up.test.ts checks the table against the
// modules, so a changed command fails the test until the table follows.
export interface CommandSummary {
  name: string;
  /** What commander's help prints for the command, e.g. `build [options] <program.jar>`. */
  term: string;
  description: string;
}

export interface CommandModule {
  commands: CommandSummary[];
  load: () => Promise<{ register: (program: Command) => void }>;
}

const c = (name: string, args: string, description: string): CommandSummary => ({
  name,
  term: args ? `${name} ${args}` : name,
  description,
});

export const modules: CommandModule[] = [
  {
    commands: [
      c('build', '[options] <program.jar>', 'Build a JVM program (jar + dependencies, or a fat jar) into a layered, reproducible OCI image, without a daemon'),
    ],
    load: () => import('./build.js'),
  },
  {
    commands: [
      c(
        'copy',
        '[options] <source> <destination>',
        'copy an image between oci:<dir>[:tag], docker-archive:<file>[:name:tag] and docker://<host>/<repo>[:tag], keeping its digest (like skopeo copy)',
      ),
      c('inspect', '[options] <image>', 'show an image: digest, platform, layers, entry point and environment'),
      c(
        'login',
        '[options] <registry>',
        'check credentials against a registry and store them in $DOCKER_CONFIG/config.json (or the configured credential helper)',
      ),
      c('logout', '[options] <registry>', 'remove stored credentials for a registry'),
    ],
    load: () => import('./copy.js'),
  },
  {
    commands: [
      c('base', '', 'Build base images'),
      c(
        'self-image',
        '[options]',
        "Package this weft (its Node.js runtime, production dependencies and compiled code) as a reproducible image: the image of weft's in-cluster components",
      ),
    ],
    load: () => import('./base.js'),
  },
  { commands: [c('registry', '', 'the embedded OCI registry (distribution spec v1.1)')], load: () => import('./registry.js') },
  {
    commands: [
      c('run', '[options] <weft.yaml>', 'start the application described by a weft.yaml'),
      c('status', '[options] <run-id>', 'show the state of a run and its instances'),
      c('logs', '[options] <run-id>', 'print the logs of every instance of a run, prefixed [runnable/instance]'),
      c('stop', '[options] <run-id>', 'stop a run gracefully (instances get their grace period), then wait until it is gone'),
      c('kill', '[options] <run-id>', 'stop a run at once (grace period 0), then wait until it is gone'),
      c('scale', '[options] <run-id> <runnable=count...>', 'change the number of instances of runnables of a run'),
      c('list', '[options]', 'list the runs weft can find'),
    ],
    load: () => import('./run.js'),
  },
  {
    commands: [c('coord', '', 'Leader election, locks and service discovery on Kubernetes Leases or etcd (see docs/coordination.md)')],
    load: () => import('./coord.js'),
  },
  {
    commands: [c('master', '[options]', 'run the weft master: a run store, a REST API under /api/v1, reconciliation and archived logs (docs/master.md)')],
    load: () => import('./master.js'),
  },
  {
    commands: [c('cluster', '', 'Provision a cluster for weft: RBAC, tenants and an in-cluster registry (idempotent, resumable)')],
    load: () => import('./cluster.js'),
  },
];

/** Loads every command module and registers the real commands (tests, and a typo's "did you mean"). */
export async function registerAllCommands(program: Command): Promise<void> {
  const loaded = await Promise.all(modules.map((m) => m.load()));
  for (const { register } of loaded) register(program);
}

/**
 * Registers the commands. When the first argument of `argv` (process.argv)
 * names a known command, only the module owning it is loaded. Otherwise
 * (help, --version, a typo) each command gets a stand-in with the name and
 * description from the table, and no module is loaded. A stand-in is never
 * run: the first word was not a command name, so commander either prints help
 * or the version, or reports an unknown command (suggesting a close name).
 */
export async function registerCommands(program: Command, argv: string[]): Promise<void> {
  const words = argv.slice(2).filter((a) => !a.startsWith('-'));
  // `weft help build` shows the real help of build, so it loads build's module.
  const first = words[0] === 'help' ? words[1] : words[0];
  const owner = first === undefined ? undefined : modules.find((m) => m.commands.some((cmd) => cmd.name === first));
  if (owner) {
    (await owner.load()).register(program);
    return;
  }
  const terms = new Map<Command, string>();
  for (const m of modules) {
    for (const summary of m.commands) terms.set(program.command(summary.name).description(summary.description), summary.term);
  }
  // The stand-ins have no options or arguments, so the help's term comes from the table.
  program.configureHelp({
    // The help command commander adds itself keeps its usual term.
    subcommandTerm: (cmd: Command): string => terms.get(cmd) ?? new Help().subcommandTerm(cmd),
  });
}
