// A Spark program's image: weft's launcher as the entry point (in the project-dependencies layer,
// so the Spark jars' layer does not change when it does), the JVM flags Spark needs, and, unless a
// base is given, a JRE base with the modules Spark needs, built from the local JDK (jlink, cached).
// Used by `weft build --spark` and by the build: section of a runnable of kind spark.
import { buildJreBaseImage, buildJvmImage, DEFAULT_JRE_MODULES, type JvmBuildOptions, type JvmBuildResult } from '../../image/index.js';
import { SPARK_HOST_LIBRARIES, SPARK_JRE_MODULES, SPARK_JVM_FLAGS, SPARK_LAUNCHER_MAIN, sparkLauncherJar } from './index.js';

/** The modules of `weft base jre --preset spark`: weft's default set and what Spark needs. */
export function sparkJreModules(base: readonly string[] = DEFAULT_JRE_MODULES): string[] {
  return [...new Set([...base, ...SPARK_JRE_MODULES])];
}

/** `weft base jre --preset spark`: Spark's modules, and the host libraries the native code in its jars needs. */
export function sparkJrePreset(modules?: readonly string[]): { modules: string[]; hostLibraries: string[] } {
  return { modules: sparkJreModules(modules), hostLibraries: [...SPARK_HOST_LIBRARIES] };
}

export interface SparkImage {
  result: JvmBuildResult;
  /** Removes the temporary files of a base built on the fly; call after the image was written. */
  cleanup(): Promise<void>;
}

/** Builds a Spark program into an image (not yet written: pass result.image to writeImage, then cleanup). */
export async function buildSparkImage(options: Omit<JvmBuildOptions, 'main'>): Promise<SparkImage> {
  const launcher = sparkLauncherJar();
  let base = options.base;
  let cleanup = async (): Promise<void> => undefined;
  if (base === undefined || base === null || base === 'scratch') {
    options.onProgress?.('no base given: a JRE with the modules Spark needs, from the local JDK (weft base jre --preset spark)');
    const jre = await buildJreBaseImage({ ...sparkJrePreset(), onProgress: options.onProgress, gzipLevel: options.gzipLevel });
    base = jre.image;
    cleanup = () => jre.cleanup();
  }
  try {
    const result = await buildJvmImage({
      ...options,
      base,
      main: SPARK_LAUNCHER_MAIN,
      projectLibs: [...(options.projectLibs ?? []), launcher],
      jvmFlags: [...SPARK_JVM_FLAGS, ...(options.jvmFlags ?? [])],
    });
    return { result, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
