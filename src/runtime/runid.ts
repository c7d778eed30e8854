// Run ids: `<app prefix>-<time><random>`, e.g. `wordcount-01kb3z9x4mq7d2hv`.
//
// Unique for the life of a cluster or a store: the time part (milliseconds) means two ids can only
// meet if they were made in the same millisecond, and then 40 random bits must match too. A
// backend that still finds the id taken throws RunIdTakenError and the runner draws a new one.
//
// The id names Kubernetes objects: the root ConfigMap `<runId>`, workloads and Services
// `<runId>-<runnable>`. A StatefulSet's pods carry the label `controller-revision-hash:
// <name>-<hash of up to 10 chars>` (label values <= 63), so `<runId>-<runnable>` must stay within
// 52 characters; runnable names are at most 20 (spec.ts), which leaves 31 for the run id. A
// Service name is a DNS-1035 label (starts with a letter), and so is every id made here.
import { randomBytes as cryptoRandomBytes } from 'node:crypto';

/** Crockford's base32 in lower case: digits and letters without i, l, o, u (easy to read aloud and copy). */
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
/** Milliseconds since the epoch in 9 base32 digits (45 bits: until the year 3084), zero-padded so ids sort by time. */
const TIME_CHARS = 9;
/** 40 random bits, 8 base32 digits. */
const RANDOM_BYTES = 5;
const RANDOM_CHARS = 8;

export const RUN_ID_MAX_LENGTH = 31;
/** How much of the app name an id keeps (the `weft.io/app` label keeps all of it). */
export const RUN_ID_PREFIX_MAX_LENGTH = RUN_ID_MAX_LENGTH - 1 - TIME_CHARS - RANDOM_CHARS;

const RUN_ID_PATTERN = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

/** Where ids get their time and randomness; tests inject both to force a repeat. */
export interface RunIdSource {
  /** Milliseconds since the epoch (default Date.now). */
  now?: () => number;
  /** Cryptographic random bytes (default node:crypto randomBytes). */
  randomBytes?: (size: number) => Uint8Array;
}

export type RunIdGenerator = (app: string) => string;

/** Thrown by Runtime.submit when another run already holds the id; nothing was created or changed. The runner retries with a new id. */
export class RunIdTakenError extends Error {
  override name = 'RunIdTakenError';
  constructor(
    readonly runId: string,
    detail: string,
  ) {
    super(`run id ${runId} is taken: ${detail}`);
  }
}

function encodeTime(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms >= 32 ** TIME_CHARS) throw new RangeError(`run id clock out of range: ${ms}`);
  let out = '';
  for (let rest = ms, i = 0; i < TIME_CHARS; i++, rest = Math.floor(rest / 32)) out = ALPHABET[rest % 32] + out;
  return out;
}

/** 5 bytes -> 8 base32 digits, 5 bits each (40 bits fit a double exactly). */
function encodeRandom(bytes: Uint8Array): string {
  if (bytes.length < RANDOM_BYTES) throw new RangeError(`run id random source gave ${bytes.length} bytes, wanted ${RANDOM_BYTES}`);
  let bits = 0;
  for (let i = 0; i < RANDOM_BYTES; i++) bits = bits * 256 + bytes[i];
  let out = '';
  for (let i = 0; i < RANDOM_CHARS; i++, bits = Math.floor(bits / 32)) out = ALPHABET[bits % 32] + out;
  return out;
}

/** The readable part: the app name cut to fit, always starting with a letter and ending without "-". */
function prefixOf(app: string): string {
  const cleaned = app
    .toLowerCase()
    .replace(/[^-a-z0-9]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, RUN_ID_PREFIX_MAX_LENGTH)
    .replace(/-+$/, '');
  return cleaned || 'run';
}

export function createRunIdGenerator(source: RunIdSource = {}): RunIdGenerator {
  const now = source.now ?? Date.now;
  const random = source.randomBytes ?? cryptoRandomBytes;
  return (app) => `${prefixOf(app)}-${encodeTime(now())}${encodeRandom(random(RANDOM_BYTES))}`;
}

/** A new run id for an app, from the clock and crypto randomness. */
export const newRunId: RunIdGenerator = createRunIdGenerator();

/** True for ids usable as weft run ids: a DNS-1035 label of at most RUN_ID_MAX_LENGTH characters. */
export function isValidRunId(id: string): boolean {
  return id.length <= RUN_ID_MAX_LENGTH && RUN_ID_PATTERN.test(id);
}

/** When an id made here was created (ids of another shape give undefined). */
export function runIdTime(id: string): Date | undefined {
  const m = new RegExp(`-([${ALPHABET}]{${TIME_CHARS}})[${ALPHABET}]{${RANDOM_CHARS}}$`).exec(id);
  if (!m) return undefined;
  let ms = 0;
  for (const c of m[1]) ms = ms * 32 + ALPHABET.indexOf(c);
  return new Date(ms);
}
