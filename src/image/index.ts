export * from './oci.js';
export * from './reference.js';
export type * from './transport.js';
export { BlobStore, sha256, hashFile, writeFileAtomic } from './blobstore.js';
export {
  writeLayer,
  layerFromDirectory,
  directoryEntries,
  normaliseImagePath,
  defaultEpoch,
  mapBounded,
  DEFAULT_GZIP_LEVEL,
  LayerError,
  type LayerEntry,
  type LayerOptions,
  type LayerResult,
  type LayerSettings,
  type DirectoryLayerOptions,
} from './layer.js';
export { LayerCache, defaultCacheDir, type JarFacts, type JarFactsStore } from './cache.js';
export { openJar, parseManifest, classFileName, JarError, type Jar, type JarEntry, type ZipLimits } from './jar.js';
export { planJvmLayers, isSnapshot, CLASSPATH, LAYER_ORDER, type JvmPlan, type JvmPlanInputs, type LayerName, type PlannedLayer } from './plan.js';
export { StaticImage, jsonBytes, parsePlatform, formatPlatform, selectPlatform } from './image.js';
export { writeOciLayout, readOciLayout, listOciLayoutTags, copyBlobs, LayoutError, REF_NAME } from './layout.js';
export { writeDockerArchive, readDockerArchive, normaliseArchiveName, ArchiveError } from './archive.js';
export { openImage, writeImage, type OpenImageOptions, type WriteImageOptions } from './images.js';
export { buildJvmImage, DEFAULT_JVM_FLAGS, type JvmBuildOptions, type JvmBuildResult, type LayerReport } from './build.js';
export * from './base-jre.js';
export { assembleImage, hostArchitecture, type AssembleOptions, type AssembledImage, type AssembledLayerReport, type PlannedImageLayer } from './assemble.js';
export * from './self-image.js';
