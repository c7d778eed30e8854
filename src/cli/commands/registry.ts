// `weft registry serve` and `weft registry gc`: the embedded OCI registry.
import type { Command } from 'commander';
import { collectGarbage, defaultRegistryRoot, startRegistry } from '../../registry/server/index.js';
import { parseDurationMs as duration } from '../../common/index.js';
import { printJson, progress } from '../output.js';

function size(value: string): number {
  const match = /^(\d+)([KMG]i?B?)?$/i.exec(value.trim());
  if (!match) throw new Error(`invalid size "${value}": use e.g. 4MiB`);
  const unit = match[2] ? { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2][0].toLowerCase() as 'k' | 'm' | 'g'] : 1;
  return Number(match[1]) * unit;
}

function positive(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, not "${value}"`);
  return n;
}

export function register(program: Command): void {
  const registry = program.command('registry').description('the embedded OCI registry (distribution spec v1.1)');

  registry
    .command('serve')
    .description('serve an OCI registry from a folder on disk')
    .option('--root <dir>', 'storage folder', defaultRegistryRoot())
    .option('--addr <host:port>', 'address to listen on', process.env.WEFT_REGISTRY_ADDR || '127.0.0.1:5000')
    .option('--htpasswd <file>', 'require Basic auth with bcrypt entries from this file (htpasswd -B)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent', 'warn')
    .option('--max-manifest-size <size>', 'largest manifest accepted', '4MiB')
    .option('--upload-timeout <duration>', 'purge upload sessions idle this long', '1h')
    .option('--gc-interval <duration>', 'also collect garbage in the server this often (off by default)')
    .option('--gc-grace <duration>', 'keep unreferenced blobs younger than this', '1h')
    .option('--read-only', 'refuse pushes and deletes (403 DENIED)')
    .option('--max-concurrent-uploads <n>', 'uploads streaming at once before others get 429', '256')
    .option('--max-uploads-per-client <n>', 'uploads one client address may stream at once (default: an eighth of --max-concurrent-uploads)')
    .option('--body-idle-timeout <duration>', 'cut off (408) a request body that sends nothing this long', '30s')
    .option('--min-body-rate <size>', 'after --body-idle-timeout, cut off bodies slower than this per second (0: off)', '4KiB')
    .option('--headers-timeout <duration>', 'time a client has to send its request headers', '20s')
    .option('--request-timeout <duration>', 'time a client has to send a whole request, body included (0: no limit)', '0')
    .option('--anonymous-pull', 'with --htpasswd: let anyone pull; pushes and deletes still need a login (a registry the nodes pull from)')
    .option('--enable-delete', 'allow deleting manifests, tags and blobs (off: 405; anyone may delete without --htpasswd)')
    .option('--json', 'print the address as JSON')
    .action(async (opts: { readOnly?: boolean; maxConcurrentUploads: string; maxUploadsPerClient?: string; bodyIdleTimeout: string; minBodyRate: string; headersTimeout: string; requestTimeout: string; enableDelete?: boolean; anonymousPull?: boolean; root: string; addr: string; htpasswd?: string; tlsCert?: string; tlsKey?: string; logLevel: string; maxManifestSize: string; uploadTimeout: string; gcInterval?: string; gcGrace: string; json?: boolean }) => {
      const running = await startRegistry({
        root: opts.root,
        addr: opts.addr,
        htpasswd: opts.htpasswd,
        anonymousPull: opts.anonymousPull === true,
        tlsCert: opts.tlsCert,
        tlsKey: opts.tlsKey,
        logLevel: opts.logLevel,
        maxManifestBytes: size(opts.maxManifestSize),
        uploadTimeoutMs: duration(opts.uploadTimeout),
        gcIntervalMs: opts.gcInterval ? duration(opts.gcInterval) : undefined,
        gcGracePeriodMs: duration(opts.gcGrace),
        readOnly: opts.readOnly,
        maxConcurrentUploads: positive(opts.maxConcurrentUploads, '--max-concurrent-uploads'),
        maxUploadsPerClient: opts.maxUploadsPerClient === undefined ? undefined : positive(opts.maxUploadsPerClient, '--max-uploads-per-client'),
        bodyIdleTimeoutMs: duration(opts.bodyIdleTimeout),
        minBodyBytesPerSecond: size(opts.minBodyRate),
        headersTimeoutMs: duration(opts.headersTimeout),
        requestTimeoutMs: duration(opts.requestTimeout),
        enableDelete: opts.enableDelete === true,
      });
      if (opts.json) printJson({ url: running.url, host: running.host, port: running.port, root: running.root, pid: process.pid });
      else process.stdout.write(`${running.url}\n`);
      progress(`registry serving ${running.root} at ${running.url} (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          running.close().then(resolve, resolve);
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });

  registry
    .command('gc')
    .description('delete blobs no manifest references (blobs younger than --grace are kept: pushes may be in flight)')
    .option('--root <dir>', 'storage folder', defaultRegistryRoot())
    .option('--dry-run', 'only report what would be deleted')
    .option('--grace <duration>', 'keep unreferenced blobs younger than this', '1h')
    .option('--upload-timeout <duration>', 'remove upload sessions idle this long', '1h')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { root: string; dryRun?: boolean; grace: string; uploadTimeout: string; json?: boolean }) => {
      const report = await collectGarbage({ root: opts.root, dryRun: opts.dryRun, gracePeriodMs: duration(opts.grace), uploadTimeoutMs: duration(opts.uploadTimeout) });
      if (opts.json) {
        printJson(report);
        return;
      }
      const verb = report.dryRun ? 'would delete' : 'deleted';
      for (const blob of report.deleted) process.stdout.write(`${verb} ${blob.digest} (${blob.size} bytes)\n`);
      progress(`${report.manifests} manifests reference ${report.referenced} blobs; ${verb} ${report.deleted.length} blobs (${report.bytesFreed} bytes); kept ${report.keptRecent} recent unreferenced blobs; purged ${report.uploadsPurged} stale uploads`);
    });
}
