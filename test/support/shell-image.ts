// A tiny OCI image with no entry point, for runs whose program is a shell
// command given as the spec's args (`sh -c ...`). In the local runtime's host
// mode such a run is a shell process and its supervisor, so a test can start
// hundreds of them on a small machine where each JVM would cost a core-second.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { jsonBytes, MediaType, sha256, StaticImage, writeOciLayout } from '../../src/image/index.js';
import { tempDir } from './temp.js';

export interface ShellImage {
  /** oci:<dir>:shell */
  reference: string;
  remove(): Promise<void>;
}

/** Writes the image into a fresh OCI layout. */
export async function buildShellImage(): Promise<ShellImage> {
  const dir = await tempDir('weft-shell-image-');
  const p = pack();
  p.entry({ name: 'app/README', mode: 0o644, mtime: new Date(0) }, 'runs are `sh -c ...` given as the spec args\n');
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  const layer = Buffer.concat(chunks);
  const config = jsonBytes({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/usr/bin:/bin'], WorkingDir: '/app' }, rootfs: { type: 'layers', diff_ids: [sha256(layer)] } });
  const manifest = jsonBytes({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
    layers: [{ mediaType: MediaType.ociLayer, digest: sha256(layer), size: layer.length }],
  });
  const layout = path.join(dir, 'image');
  await writeOciLayout(new StaticImage('shell', manifest, config, async () => Readable.from([layer])), layout, 'shell');
  return { reference: `oci:${layout}:shell`, remove: () => fs.rm(dir, { recursive: true, force: true }) };
}
