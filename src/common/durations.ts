// Durations as people write them in specs and flags: 500ms, 60s, 5m, 1h30m, or a bare
// number of seconds. One parser for every component, so they all accept the same forms.

export class DurationError extends Error {
  override name = 'DurationError';
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds of `500ms`, `60s`, `5m`, `1h30m`, or of a number (string or not) of seconds. */
export function parseDurationMs(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text < 0) throw new DurationError(`invalid duration ${text}: use a positive number of seconds or a string like 60s, 5m, 1h`);
    return Math.round(text * 1000);
  }
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  let match: RegExpExecArray | null;
  while ((match = part.exec(trimmed)) !== null) {
    total += Number(match[1]) * units[match[2]];
    consumed = part.lastIndex;
  }
  if (consumed === 0 || consumed !== trimmed.length) throw new DurationError(`invalid duration "${text}": write it like 500ms, 60s, 5m or 1h30m`);
  return Math.round(total);
}

/** The shortest exact form: 2h, 5m, 30s or 250ms. */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
