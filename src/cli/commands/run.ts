// weft run | status | logs | stop | kill | scale | list: parse, call src/runtime, print.
import type { Command } from 'commander';
import { Option } from 'commander';
import { createRunner, createRuntime, isTerminal, loadAppSpec, locateRun, Runner, type RunnerOptions, type RunStatus, type Runtime } from '../../runtime/index.js';
import { bold, dim, green, printJson, progress, red } from '../output.js';

interface RuntimeFlags {
  runtime?: string;
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  json?: boolean;
  master?: string;
  token?: string;
}

function runtimeOptions(flags: RuntimeFlags): RunnerOptions {
  const runtime = flags.runtime ?? process.env.WEFT_RUNTIME ?? 'kubernetes';
  if (runtime === 'kubernetes') return { runtime, kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace };
  if (runtime === 'local') return { runtime };
  throw new Error(`unknown runtime "${runtime}": use --runtime kubernetes or --runtime local`);
}

function withRuntimeFlags(cmd: Command): Command {
  return cmd
    .addOption(new Option('--runtime <name>', 'where runs live: kubernetes or local (default: $WEFT_RUNTIME; else new runs go to kubernetes, and a run id is looked up in the local state first, then on kubernetes)'))
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)')
    .option('--context <name>', 'kubeconfig context to use')
    .option('-n, --namespace <name>', 'Kubernetes namespace (default: the context\'s, or "default")')
    .option('--json', 'print JSON')
    .option('--master <url>', 'act through a weft master (default: $WEFT_MASTER); -n then names the master namespace')
    .option('--token <token>', 'the master token (default: $WEFT_TOKEN, which keeps it out of the process list)');
}

/** The runtime the command acts on: a master's API when --master/WEFT_MASTER is set, else the backend itself. */
async function openRuntime(flags: RuntimeFlags): Promise<Runtime> {
  const master = flags.master ?? process.env.WEFT_MASTER;
  if (master) {
    const { MasterRuntime } = await import('../../master/client.js');
    return new MasterRuntime({ url: master, token: flags.token ?? process.env.WEFT_TOKEN, namespace: flags.namespace });
  }
  return createRuntime(runtimeOptions(flags));
}

/**
 * For commands about one run: the backend the user named, else the one that holds the run
 * (local state first, then Kubernetes; see locateRun).
 */
async function withRunRuntime<T>(runId: string, flags: RuntimeFlags, fn: (runtime: Runtime, status: RunStatus) => Promise<T>): Promise<T> {
  let runtime: Runtime;
  let status: RunStatus | undefined;
  if (flags.master ?? process.env.WEFT_MASTER ?? flags.runtime ?? process.env.WEFT_RUNTIME) {
    runtime = await openRuntime(flags);
    status = await runtime.status(runId).catch(async (error: unknown) => {
      await runtime.close();
      throw error;
    });
    if (!status) {
      await runtime.close();
      throw new Error(`no run ${runId} found on the ${runtime.name} runtime (weft list shows the runs; check --namespace/--context)`);
    }
  } else {
    ({ runtime, status } = await locateRun(runId, { kubernetes: { kubeconfig: flags.kubeconfig, context: flags.context, namespace: flags.namespace } }));
  }
  try {
    return await fn(runtime, status);
  } finally {
    await runtime.close();
  }
}

async function withRuntime<T>(flags: RuntimeFlags, fn: (runtime: Runtime) => Promise<T>): Promise<T> {
  const runtime = await openRuntime(flags);
  try {
    return await fn(runtime);
  } finally {
    await runtime.close();
  }
}

function colourState(state: string): string {
  if (state === 'COMPLETED' || state === 'RUNNING') return green(state);
  if (state === 'FAILED' || state === 'KILLED' || state === 'REJECTED') return red(state);
  return bold(state);
}

function printStatus(status: RunStatus): void {
  process.stdout.write(`${bold(status.runId)}  ${status.app}  ${colourState(status.state)}\n`);
  if (status.message) process.stdout.write(`  ${status.message}\n`);
  for (const r of status.runnables) {
    process.stdout.write(`  ${r.name} (${r.kind}): ${r.running}/${r.desired} running\n`);
    for (const i of r.instances) {
      const extra = [i.host && `on ${i.host}`, i.exitCode !== undefined && `exit ${i.exitCode}`, i.reason, i.message].filter(Boolean).join(', ');
      process.stdout.write(`    ${i.id.padEnd(6)} ${colourState(i.state)}${extra ? dim(`  ${extra}`) : ''}\n`);
    }
  }
}

function statusJson(s: RunStatus): Record<string, unknown> {
  return { ...s, runnables: s.runnables.map((r) => ({ ...r, instances: r.instances.map((i) => ({ ...i })) })) };
}

async function follow(runtime: Runtime, runId: string, json: boolean, until: (s: RunStatus) => boolean): Promise<RunStatus> {
  return new Promise((resolve, reject) => {
    let last = '';
    const onStatus = (s: RunStatus) => {
      if (s.runId !== runId) return;
      const line = `${s.state}${s.message ? `: ${s.message}` : ''}`;
      if (line !== last && !json) progress(`${dim(runId)} ${colourState(s.state)}${s.message ? dim(` ${s.message}`) : ''}`);
      last = line;
      if (until(s)) {
        off();
        resolve(s);
      }
    };
    const off = runtime.watch(onStatus);
    runtime.status(runId).then((s) => {
      if (s) onStatus(s);
      else {
        off();
        reject(new Error(`run ${runId} is not known to the ${runtime.name} runtime: nothing to follow`));
      }
    }, reject);
  });
}

function age(created?: string): string {
  if (!created) return '?';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(created)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

export function register(program: Command): void {
  withRuntimeFlags(
    program
      .command('run')
      .description('start the application described by a weft.yaml')
      .argument('<weft.yaml>', 'the app spec')
      .option('--file <path>', 'a file shipped with the run: every instance reads it at /etc/weft/files/<its name> (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
      .option('--wait', 'follow the run until it ends; exit 0 only if it COMPLETED'),
  ).action(async (file: string, flags: RuntimeFlags & { wait?: boolean; file: string[] }) => {
    const spec = await loadAppSpec(file);
    const runner = new Runner(await openRuntime(flags));
    try {
      const controller = await runner.prepare(spec).withFiles(flags.file).start();
      // Refused or failed before anything ran (bad spec, image not pulled or unpacked): say why, exit non-zero.
      if (isTerminal(controller.state) && controller.state !== 'COMPLETED') {
        const { runId, state, reason, message } = controller.status;
        if (flags.json) printJson({ runId, state, reason, message, namespace: controller.status.namespace });
        else progress(`${red(`${state.toLowerCase()}:`)} run ${runId}${reason ? ` (${reason})` : ''}: ${message ?? 'no reason given'}`);
        process.exitCode = 1;
        controller.release();
        return;
      }
      if (!flags.wait) {
        if (flags.json) printJson({ runId: controller.runId, state: controller.state, namespace: controller.status.namespace });
        else process.stdout.write(`${controller.runId}\n`);
        return;
      }
      if (!flags.json) progress(`${dim('run')} ${bold(controller.runId)} ${dim('submitted; following until it ends (Ctrl-C stops following, not the run)')}`);
      const final = await follow(runner.runtime, controller.runId, !!flags.json, (s) => isTerminal(s.state));
      if (flags.json) printJson(statusJson(final));
      else process.stdout.write(`${controller.runId} ${colourState(final.state)}${final.message ? ` ${final.message}` : ''}\n`);
      process.exitCode = final.state === 'COMPLETED' ? 0 : 1;
      controller.release();
    } finally {
      await runner.close();
    }
  });

  withRuntimeFlags(program.command('status').description('show the state of a run and its instances').argument('<run-id>')).action(
    async (runId: string, flags: RuntimeFlags) => {
      await withRunRuntime(runId, flags, async (_runtime, status) => {
        if (flags.json) printJson(statusJson(status));
        else printStatus(status);
      });
    },
  );

  withRuntimeFlags(
    program
      .command('logs')
      .description('print the logs of every instance of a run, prefixed [runnable/instance]')
      .argument('<run-id>')
      .option('-f, --follow', 'keep following until the run ends')
      .option('--runnable <name>', 'only this runnable')
      .option('--instance <id>', 'only this instance')
      .option('--tail <n>', 'only the last n lines of each instance', (v) => Number.parseInt(v, 10)),
  ).action(async (runId: string, flags: RuntimeFlags & { follow?: boolean; runnable?: string; instance?: string; tail?: number }) => {
    await withRunRuntime(runId, flags, async (runtime) => {
      const abort = new AbortController();
      const onSigint = () => abort.abort();
      process.once('SIGINT', onSigint);
      try {
        for await (const l of runtime.logs(runId, { follow: flags.follow, runnable: flags.runnable, instance: flags.instance, tail: flags.tail, signal: abort.signal })) {
          if (flags.json) process.stdout.write(`${JSON.stringify(l)}\n`);
          else process.stdout.write(`${dim(`[${l.runnable}/${l.instance}]`)} ${l.line}\n`);
        }
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
  });

  for (const [name, description] of [
    ['stop', 'stop a run gracefully (instances get their grace period), then wait until it is gone'],
    ['kill', 'stop a run at once (grace period 0), then wait until it is gone'],
  ] as const) {
    withRuntimeFlags(
      program
        .command(name)
        .description(description)
        .argument('<run-id>')
        .option('--no-wait', 'return once the stop was issued')
        .option('--timeout <seconds>', 'how long to wait for the run to end', (v) => Number.parseFloat(v), 120),
    ).action(async (runId: string, flags: RuntimeFlags & { wait: boolean; timeout: number }) => {
      await withRunRuntime(runId, flags, async (runtime) => {
        if (name === 'stop') await runtime.stop(runId);
        else await runtime.kill(runId);
        let final: RunStatus | undefined;
        if (flags.wait) {
          const timer = new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), flags.timeout * 1000).unref());
          final = await Promise.race([follow(runtime, runId, !!flags.json, (s) => isTerminal(s.state)), timer]);
          if (!final) throw new Error(`run ${runId} did not end within ${flags.timeout}s; weft status ${runId} shows what is left`);
        }
        if (flags.json) printJson({ runId, state: final?.state ?? 'STOPPING', message: final?.message });
        else process.stdout.write(`${runId} ${colourState(final?.state ?? 'STOPPING')}\n`);
      });
    });
  }

  withRuntimeFlags(
    program
      .command('scale')
      .description('change the number of instances of runnables of a run')
      .argument('<run-id>')
      .argument('<runnable=count...>', 'for example web=5'),
  ).action(async (runId: string, changes: string[], flags: RuntimeFlags) => {
    const parsed = changes.map((c) => {
      const m = /^([a-z][-a-z0-9]*)=(\d+)$/.exec(c);
      if (!m) throw new Error(`cannot read "${c}": write <runnable>=<count>, for example web=5`);
      return { runnable: m[1], instances: Number(m[2]) };
    });
    await withRunRuntime(runId, flags, async (runtime) => {
      for (const c of parsed) await runtime.scale(runId, c.runnable, c.instances);
      if (flags.json) printJson({ runId, scaled: parsed });
      else for (const c of parsed) process.stdout.write(`${runId} ${c.runnable} -> ${c.instances} instance(s)\n`);
    });
  });

  withRuntimeFlags(program.command('list').description('list the runs weft can find').option('--live', 'only runs that have not ended')).action(
    async (flags: RuntimeFlags & { live?: boolean }) => {
      await withRuntime(flags, async (runtime) => {
        const runs = await runtime.list({ liveOnly: flags.live });
        if (flags.json) {
          printJson(runs.map((s) => ({ runId: s.runId, app: s.app, state: s.state, message: s.message, createdAt: s.createdAt, namespace: s.namespace, runnables: s.runnables.map((r) => ({ name: r.name, kind: r.kind, desired: r.desired, running: r.running })) })));
          return;
        }
        if (runs.length === 0) {
          progress('no runs');
          return;
        }
        process.stdout.write(`${'RUN ID'.padEnd(30)} ${'APP'.padEnd(20)} ${'STATE'.padEnd(10)} ${'AGE'.padEnd(5)} INSTANCES  MESSAGE\n`);
        for (const s of runs) {
          const inst = s.runnables.map((r) => `${r.running}/${r.desired}`).join(',');
          process.stdout.write(`${s.runId.padEnd(30)} ${s.app.padEnd(20)} ${colourState(s.state.padEnd(10))} ${age(s.createdAt).padEnd(5)} ${inst.padEnd(10)} ${s.message ?? ''}\n`);
        }
      });
    },
  );
}
