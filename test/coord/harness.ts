// Test harness for the coordination tests and bench/coord-failover: candidate
// child processes, a TCP proxy that can partition one of them, and the safety
// checks on a fencing-token log. (No tests in this file.)
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CandidateConfig, CandidateEvent } from '../support/coord-candidate.js';
import type { FencedEntry } from '../../src/coord/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const candidateScript = path.resolve(here, '../support/coord-candidate.js');

/** All events of all candidates, in arrival order, plus the test's own marks (kills, cuts). */
export class Timeline {
  readonly events: Array<CandidateEvent | { ev: 'killed' | 'cut' | 'healed'; id: string; at: number }> = [];
  private waiters: Array<{ match: (e: CandidateEvent) => boolean; resolve: (e: CandidateEvent) => void }> = [];

  push(e: CandidateEvent): void {
    this.events.push(e);
    for (const w of [...this.waiters]) {
      if (w.match(e)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  }
  mark(ev: 'killed' | 'cut' | 'healed', id: string): number {
    const at = Date.now();
    this.events.push({ ev, id, at });
    return at;
  }

  /** Resolves with the first event (already seen after index `from`, or future) that matches. */
  waitFor<E extends CandidateEvent>(match: (e: CandidateEvent) => e is E, timeoutMs: number, what: string, from = 0): Promise<E> {
    const seen = this.events.slice(from).find((e) => e.ev !== 'killed' && e.ev !== 'cut' && e.ev !== 'healed' && match(e as CandidateEvent));
    if (seen) return Promise.resolve(seen as E);
    return new Promise<E>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; events so far:\n${this.events.map((e) => JSON.stringify(e)).join('\n')}`));
      }, timeoutMs);
      const waiter = { match, resolve: (e: CandidateEvent) => { clearTimeout(timer); resolve(e as E); } };
      this.waiters.push(waiter);
    });
  }
}

export const isElected = (e: CandidateEvent): e is Extract<CandidateEvent, { ev: 'elected' }> => e.ev === 'elected';

export class CandidateProcess {
  readonly child: ChildProcess;
  readonly stderr: string[] = [];
  exited: Promise<void>;

  /** `config`: a weft candidate; or `{ argv }`: any program printing the same JSON events (the Go peers). */
  constructor(readonly id: string, config: CandidateConfig | { argv: string[] }, timeline: Timeline) {
    const [cmd, ...args] = 'argv' in config ? config.argv : [process.execPath, candidateScript, JSON.stringify(config)];
    this.child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          timeline.push(JSON.parse(line) as CandidateEvent);
        } catch {
          this.stderr.push(`non-JSON output: ${line}`);
        }
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** Stops every candidate: SIGTERM (resign), SIGKILL after 5 s. */
export async function stopAll(candidates: CandidateProcess[]): Promise<void> {
  await Promise.all(
    candidates.map(async (c) => {
      const t = setTimeout(() => c.kill('SIGKILL'), 5000);
      await c.kill('SIGTERM');
      clearTimeout(t);
    }),
  );
}

/**
 * A TCP proxy on 127.0.0.1 in front of `target`. cut() makes it a black hole
 * (connections stay open, bytes are dropped, new connections hang) — a network
 * partition as the client sees it. heal() drops the black-holed connections so
 * clients reconnect, and forwards again.
 */
export class PartitionProxy {
  private server: net.Server;
  private readonly pairs = new Set<{ a: net.Socket; b: net.Socket | undefined }>();
  private partitioned = false;
  port = 0;

  constructor(private readonly targetHost: string, private readonly targetPort: number) {
    this.server = net.createServer((client) => {
      const pair: { a: net.Socket; b: net.Socket | undefined } = { a: client, b: undefined };
      this.pairs.add(pair);
      client.on('error', () => undefined);
      client.on('close', () => {
        pair.b?.destroy();
        this.pairs.delete(pair);
      });
      if (this.partitioned) {
        client.on('data', () => undefined); // swallow
        return;
      }
      const upstream = net.connect(this.targetPort, this.targetHost);
      pair.b = upstream;
      upstream.on('error', () => client.destroy());
      upstream.on('close', () => client.destroy());
      client.on('data', (d) => { if (!this.partitioned) upstream.write(d); });
      upstream.on('data', (d) => { if (!this.partitioned) client.write(d); });
    });
  }

  async start(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }
  cut(): void {
    this.partitioned = true;
  }
  heal(): void {
    this.partitioned = false;
    for (const p of this.pairs) {
      p.a.destroy();
      p.b?.destroy();
    }
    this.pairs.clear();
  }
  async close(): Promise<void> {
    this.heal();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * Safety checks on a run:
 *  - the fenced log's tokens never decrease, and each writer's entries form one
 *    contiguous block per token (terms do not interleave);
 *  - a new term's token is strictly greater than the previous term's;
 *  - no candidate's leader-only write was rejected as stale (it would mean it
 *    believed it led while a newer leader existed);
 *  - in the event timeline, every `elected` comes after the previous leader's
 *    `stepdown` or its kill.
 * Returns a list of violations (empty = safe).
 */
export function checkSafety(log: FencedEntry[], timeline: Timeline['events']): string[] {
  const problems: string[] = [];
  let prev: FencedEntry | undefined;
  const terms: Array<{ token: number; writer: string }> = [];
  for (const e of log) {
    if (prev && e.token < prev.token) problems.push(`log token decreased: ${prev.token} (${prev.writer}) then ${e.token} (${e.writer})`);
    if (prev && e.token === prev.token && e.writer !== prev.writer) problems.push(`two writers with one token ${e.token}: ${prev.writer} and ${e.writer}`);
    if (!prev || e.token !== prev.token) terms.push({ token: e.token, writer: e.writer });
    prev = e;
  }
  const seenTokens = new Set<number>();
  for (const t of terms) {
    if (seenTokens.has(t.token)) problems.push(`term with token ${t.token} appears twice (interleaved leaders)`);
    seenTokens.add(t.token);
  }
  for (const e of timeline) {
    if (e.ev === 'append' && !e.ok && e.error === 'stale') problems.push(`${e.id} wrote with stale token ${e.token} at ${e.at}: it acted as leader after a newer leader`);
  }
  // Order by wall clock (one machine, one clock). Within one millisecond, keep arrival
  // order, except that one candidate's step-down (or kill) sorts before another's election.
  const ends = (e: { ev: string }) => e.ev === 'stepdown' || e.ev === 'killed';
  const ordered = [...timeline].sort((a, b) => {
    if (a.at !== b.at) return a.at - b.at;
    if (a.id !== b.id && ends(a) && b.ev === 'elected') return -1;
    if (a.id !== b.id && ends(b) && a.ev === 'elected') return 1;
    return 0;
  });
  let leader: { id: string; token: number } | undefined;
  for (const e of ordered) {
    if (e.ev === 'elected') {
      if (leader && leader.id !== '' && leader.id !== e.id) problems.push(`${e.id} elected (token ${e.token}) while ${leader.id} (token ${leader.token}) had neither stepped down nor been killed`);
      if (leader && e.token <= leader.token) problems.push(`token did not increase: ${leader.token} then ${e.token}`);
      leader = { id: e.id, token: e.token };
    } else if ((e.ev === 'stepdown' || e.ev === 'killed') && leader && leader.id === e.id) {
      leader = { ...leader, id: '' };
    }
  }
  return problems;
}

export function requireEnv(name: string, how: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: ${how}`);
  return v;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
