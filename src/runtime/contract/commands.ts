// How a command reaches a program: an annotation `weft.io/command-<id>` whose
// value is {"command","payload","sentAt"}, in the downward-API annotations file
// (key="value" lines). Kubernetes patches it onto the pod and the kubelet
// writes the file; the local runtime writes the same file itself.
import { ANN_COMMAND_PREFIX } from './metadata.js';

export interface CommandMessage {
  command: string;
  payload?: string;
  sentAt: string;
}

/** One command as the annotation to add; the id orders commands by time and keeps two apart. */
export function commandAnnotation(command: string, payload: string | undefined, now = Date.now()): { key: string; value: string } {
  const id = `${now.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const message: CommandMessage = { command, payload, sentAt: new Date(now).toISOString() };
  return { key: `${ANN_COMMAND_PREFIX}${id}`, value: JSON.stringify(message) };
}

/** The downward-API annotations format: key="value" lines, sorted. */
export function formatAnnotations(annotations: Record<string, string>): string {
  return Object.keys(annotations)
    .sort()
    .map((k) => `${k}=${JSON.stringify(annotations[k])}\n`)
    .join('');
}

export function parseAnnotations(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    try {
      out[line.slice(0, eq)] = JSON.parse(line.slice(eq + 1)) as string;
    } catch {
      // not ours
    }
  }
  return out;
}
