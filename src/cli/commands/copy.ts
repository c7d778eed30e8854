// `weft copy`, `weft inspect`, `weft login`, `weft logout`: parse options and
// print. The work is in src/registry/client (and src/image for files).
import type { Command } from 'commander';
// The capability modules are imported when a command runs, not when the CLI
// starts, so `weft <anything>` does not pay for loading the registry client.
import type { ImageConfig } from '../../image/oci.js';
import type { RegistryClient } from '../../registry/client/index.js';
import type { TransferProgress } from '../../image/transport.js';
import { bold, dim, green, printJson, progress } from '../output.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function short(digest: string): string {
  return digest.replace(/^(sha256:|sha512:)/, '').slice(0, 12);
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

/**
 * Progress on stderr: one line per blob when it is done (sent, exists, mounted);
 * on a colour-capable TTY also a live line with bytes moved so far.
 */
export function terminalProgress(enabled: boolean): TransferProgress & { finish(): void } {
  const live = enabled && process.stderr.isTTY === true && process.env.TERM !== 'dumb';
  const sending = new Map<string, { sent: number; size: number }>();
  let lastDraw = 0;
  let drawn = false;
  const clear = (): void => {
    if (drawn) process.stderr.write('\r\u001b[2K');
    drawn = false;
  };
  const draw = (): void => {
    const now = Date.now();
    if (!live || now - lastDraw < 100) return;
    lastDraw = now;
    let sent = 0;
    let size = 0;
    for (const s of sending.values()) {
      sent += s.sent;
      size += s.size;
    }
    clear();
    process.stderr.write(dim(`  sending ${sending.size} blob(s): ${formatBytes(sent)} / ${formatBytes(size)}`));
    drawn = true;
  };
  return {
    onBlob(event) {
      if (!enabled) return;
      if (event.status === 'sending') {
        sending.set(event.digest, { sent: event.sent, size: event.size });
        draw();
        return;
      }
      sending.delete(event.digest);
      clear();
      const what = event.status === 'sent' ? green(`sent ${formatBytes(event.size)}`) : event.status === 'exists' ? dim('already there') : dim('mounted');
      progress(`  ${short(event.digest)}  ${what}`);
    },
    finish: clear,
  };
}

interface RegistryFlags {
  insecureRegistry: string[];
  platform?: string;
  json?: boolean;
}

const registryClient = () => import('../../registry/client/index.js');

async function client(flags: RegistryFlags): Promise<RegistryClient> {
  const { createRemoteTransport } = await registryClient();
  return createRemoteTransport({ insecureRegistries: flags.insecureRegistry });
}

function summarise(config: ImageConfig, layers: number, size: number) {
  return {
    created: config.created,
    architecture: config.architecture,
    os: config.os,
    variant: config.variant,
    layers,
    size,
    env: config.config?.Env ?? [],
    entrypoint: config.config?.Entrypoint,
    cmd: config.config?.Cmd,
    workingDir: config.config?.WorkingDir,
    user: config.config?.User,
    labels: config.config?.Labels ?? {},
    exposedPorts: Object.keys(config.config?.ExposedPorts ?? {}),
  };
}

export function register(program: Command): void {
  program
    .command('copy')
    .description('copy an image between oci:<dir>[:tag], docker-archive:<file>[:name:tag] and docker://<host>/<repo>[:tag], keeping its digest (like skopeo copy)')
    .argument('<source>', 'image to read')
    .argument('<destination>', 'where to write it')
    .option('--platform <os/arch[/variant]>', 'image to pick when the source is an index (default linux/amd64)')
    .option('--all', 'copy a whole index (every platform), registry to registry')
    .option('--insecure-registry <host>', 'allow plain HTTP to this registry (repeatable; loopback hosts always may)', collect, [])
    .option('-q, --quiet', 'no progress output')
    .option('--json', 'print a JSON summary on stdout')
    .action(async (source: string, destination: string, flags: RegistryFlags & { quiet?: boolean; all?: boolean }) => {
      if (flags.all && flags.platform) throw new Error('give either --all or --platform, not both');
      // Load everything the copy needs at once (one module graph fetch, not a waterfall).
      const [{ parseImageReference }, { copyImage }] = await Promise.all([
        import('../../image/reference.js'),
        registryClient(),
        source.startsWith('oci:') || destination.startsWith('oci:') ? import('../../image/layout.js') : undefined,
      ]);
      parseImageReference(source);
      parseImageReference(destination);
      const c = await client(flags);
      const tp = terminalProgress(!flags.json && !flags.quiet);
      try {
        if (!flags.json && !flags.quiet) progress(`${bold('copy')} ${source} ${dim('->')} ${destination}`);
        const result = await copyImage(c, source, destination, { platform: flags.platform, progress: tp, all: flags.all });
        tp.finish();
        const counts = { sent: 0, exists: 0, mounted: 0 };
        for (const b of result.blobs) counts[b.status]++;
        if (flags.json) {
          printJson({ ...result, counts });
        } else {
          if (!flags.quiet) {
            progress(
              `${green('done')} in ${result.seconds.toFixed(2)} s: ${counts.sent} blob(s) sent (${formatBytes(result.bytesSent)}), ` +
                `${counts.exists} already there, ${counts.mounted} mounted`,
            );
          }
          process.stdout.write(`${result.digest}\n`);
        }
      } finally {
        c.close();
      }
    });

  program
    .command('inspect')
    .description('show an image: digest, platform, layers, entry point and environment')
    .argument('<image>', 'oci:<dir>[:tag], docker-archive:<file>[:name:tag] or docker://<host>/<repo>[:tag|@digest]')
    .option('--raw', 'print the manifest exactly as stored (for docker:// the document at the reference, which may be an index)')
    .option('--config', 'print the image config JSON')
    .option('--platform <os/arch[/variant]>', 'image to pick when the reference is an index')
    .option('--insecure-registry <host>', 'allow plain HTTP to this registry (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action(async (text: string, flags: RegistryFlags & { raw?: boolean; config?: boolean }) => {
      const [{ parseImageReference, formatImageReference }, { openImage }] = await Promise.all([import('../../image/reference.js'), import('../../image/images.js')]);
      const ref = parseImageReference(text);
      const c = await client(flags);
      try {
        if (flags.raw && ref.transport === 'docker') {
          const fetched = await c.getManifest(ref.ref);
          process.stdout.write(fetched.bytes);
          return;
        }
        const image = await openImage(ref, { remote: c, platform: flags.platform ?? (ref.transport === 'docker' ? 'linux/amd64' : undefined) });
        if (!image) throw new Error('scratch is an empty image: there is nothing to inspect');
        if (flags.raw) {
          process.stdout.write(image.manifestBytes);
          return;
        }
        if (flags.config) {
          process.stdout.write(image.configBytes);
          process.stdout.write('\n');
          return;
        }
        const size = image.manifest.layers.reduce((s, l) => s + l.size, 0);
        const info = {
          name: formatImageReference(ref),
          digest: image.manifestDigest,
          mediaType: image.manifestMediaType,
          ...summarise(image.config, image.manifest.layers.length, size),
          annotations: image.manifest.annotations ?? {},
          layerDigests: image.manifest.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })),
        };
        if (flags.json) {
          printJson(info);
          return;
        }
        const out: string[] = [];
        out.push(`${bold('Name')}:         ${info.name}`);
        out.push(`${bold('Digest')}:       ${info.digest}`);
        out.push(`${bold('Media type')}:   ${info.mediaType}`);
        out.push(`${bold('Platform')}:     ${[info.os, info.architecture, info.variant].filter(Boolean).join('/')}`);
        if (info.created) out.push(`${bold('Created')}:      ${info.created}`);
        if (info.entrypoint) out.push(`${bold('Entrypoint')}:   ${JSON.stringify(info.entrypoint)}`);
        if (info.cmd) out.push(`${bold('Cmd')}:          ${JSON.stringify(info.cmd)}`);
        if (info.workingDir) out.push(`${bold('WorkingDir')}:   ${info.workingDir}`);
        if (info.env.length) out.push(`${bold('Env')}:`, ...info.env.map((e) => `  ${e}`));
        const labels = Object.entries(info.labels);
        if (labels.length) out.push(`${bold('Labels')}:`, ...labels.map(([k, v]) => `  ${k}=${v}`));
        out.push(`${bold('Layers')}:       ${info.layers} (${formatBytes(size)})`);
        for (const l of info.layerDigests) out.push(`  ${l.digest}  ${formatBytes(l.size)}`);
        process.stdout.write(`${out.join('\n')}\n`);
      } finally {
        c.close();
      }
    });

  program
    .command('login')
    .description('check credentials against a registry and store them in $DOCKER_CONFIG/config.json (or the configured credential helper)')
    .argument('<registry>', 'host[:port]')
    .requiredOption('-u, --username <user>', 'user name')
    .option('-p, --password <password>', 'password (visible to other users of this machine; prefer --password-stdin)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--insecure-registry <host>', 'allow plain HTTP to this registry (credentials still only go to loopback over plain HTTP)', collect, [])
    .option('--json', 'print JSON')
    .action(async (registry: string, flags: RegistryFlags & { username: string; password?: string; passwordStdin?: boolean }) => {
      let password = flags.password;
      if (flags.passwordStdin) {
        if (flags.password) throw new Error('give either --password or --password-stdin, not both');
        const chunks: Buffer[] = [];
        for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
        password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
      }
      if (!password) throw new Error('no password: pipe it to weft login --password-stdin, or pass -p');
      const host = registry.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
      const { login } = await registryClient();
      const { storedIn } = await login(host, flags.username, password, { insecureRegistries: flags.insecureRegistry });
      if (flags.json) printJson({ registry: host, username: flags.username, storedIn });
      else progress(`${green('Login succeeded')} for ${flags.username} at ${host} ${dim(`(stored in ${storedIn})`)}`);
    });

  program
    .command('logout')
    .description('remove stored credentials for a registry')
    .argument('<registry>', 'host[:port]')
    .option('--json', 'print JSON')
    .action(async (registry: string, flags: { json?: boolean }) => {
      const host = registry.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
      const { logout } = await registryClient();
      const removed = await logout(host);
      if (flags.json) printJson({ registry: host, removed });
      else if (removed) progress(`Removed credentials for ${host}`);
      else throw new Error(`not logged in to ${host}: no credentials stored for it`);
    });
}
