// A spec's `build:` sections, resolved once for every runtime before any backend
// sees the run: each is built with the image builder (src/image), pushed with the
// registry client to its `target`, and replaced by the pushed reference pinned
// by digest. Backends only ever run images.
import type { AppSpec, RunnableSpec } from '../spec.js';

export class BuildError extends Error {
  override name = 'BuildError';
}

type Build = NonNullable<RunnableSpec['build']>;

async function buildAndPush(runnable: string, build: Build, kind: RunnableSpec['kind']): Promise<string> {
  if (!build.target || !build.target.startsWith('docker://')) {
    throw new BuildError(`runnable ${runnable}: a build: section needs target: docker://<registry>/<repository>:<tag>, a registry the runtime can pull from`);
  }
  // Loaded only when a spec builds: running prebuilt images never loads the builder.
  const image = await import('../../image/index.js');
  const { createRemoteTransport } = await import('../../registry/client/index.js');
  const target = image.parseImageReference(build.target);
  if (target.transport !== 'docker') throw new BuildError(`runnable ${runnable}: target must be docker://...`);
  const remote = createRemoteTransport();
  let built;
  let cleanup = async (): Promise<void> => undefined;
  try {
    if (kind === 'spark') {
      // weft's launcher is the entry point; the spec's spark.mainClass is the program's main.
      const { buildSparkImage } = await import('../spark/image.js');
      const spark = await buildSparkImage({ program: build.jar, libs: build.libs, base: build.base ?? undefined, remote });
      built = spark.result;
      cleanup = spark.cleanup;
    } else {
      built = await image.buildJvmImage({ program: build.jar, libs: build.libs, main: build.mainClass, base: build.base ?? undefined, remote });
    }
  } catch (error) {
    throw new BuildError(`runnable ${runnable}: building ${build.jar} failed: ${(error as Error).message}`);
  }
  try {
    const pushed = await image.writeImage(built.image, target, { remote });
    return `docker://${image.formatDockerReference({ ...target.ref, tag: undefined, digest: pushed.digest })}`;
  } finally {
    await cleanup();
  }
}

/** The spec with every `build:` section built, pushed and replaced by its image; the same spec when there is none. */
export async function resolveBuilds(spec: AppSpec): Promise<AppSpec> {
  if (!spec.runnables.some((r) => r.build)) return spec;
  const runnables: RunnableSpec[] = [];
  for (const r of spec.runnables) {
    if (!r.build) {
      runnables.push(r);
      continue;
    }
    const { build, ...rest } = r;
    runnables.push({ ...rest, image: await buildAndPush(r.name, build, r.kind) });
  }
  return { ...spec, runnables };
}
