// One run: why it failed (at the top), controls, its state timeline, runnables
// with their instances, the resource report, its spec and its logs.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { may, nsPath, readLogs, request, TERMINAL, watch, type LogLine, type ResourceReport, type RunDetail, type Whoami } from './api';
import { href, runDuration, StateBadge, time } from './util';

const END = Number.MAX_SAFE_INTEGER;

export function RunPage(props: { me: Whoami; ns: string; id: string }) {
  const { ns, id } = props;
  const [run, setRun] = useState<RunDetail>();
  const [resources, setResources] = useState<ResourceReport>();
  const [error, setError] = useState<string>();
  const [now, setNow] = useState(Date.now());
  const base = `${nsPath(ns)}/runs/${encodeURIComponent(id)}`;
  const ended = run ? TERMINAL.has(run.state) : false;

  const load = async () => {
    try {
      const detail = await request<RunDetail>('GET', base);
      setRun(detail);
      setError(undefined);
      request<ResourceReport>('GET', `${base}/resources`).then(setResources, () => undefined);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    let timer: number | undefined;
    const soon = () => {
      clearTimeout(timer);
      timer = window.setTimeout(() => void load(), 150);
    };
    void load();
    const stop = watch(ns, id, { onOpen: soon, onEvent: soon });
    // Instances change (restarts, hosts) without a run transition: look again while it is live.
    const poll = window.setInterval(() => {
      setNow(Date.now());
    }, 1000);
    const refresh = window.setInterval(() => {
      if (!document.hidden) void load();
    }, 3000);
    return () => {
      stop();
      clearTimeout(timer);
      clearInterval(poll);
      clearInterval(refresh);
    };
  }, [ns, id]);
  useEffect(() => {
    // Nothing changes after the end: stop looking every 3 s (the watch still reports a late transition).
    if (ended) setNow(Date.now());
  }, [ended]);

  if (!run)
    return (
      <main>
        <p>
          <a href={href(ns)}>← Runs</a>
        </p>
        {error ? (
          <p class="error" role="alert">
            {error}
          </p>
        ) : (
          <p class="muted">Loading run {id}…</p>
        )}
      </main>
    );

  const canOperate = may(props.me, ns, 'operator');
  return (
    <main class="run">
      <p>
        <a href={href(ns)}>← Runs</a>
      </p>
      <h1>
        {run.app} <StateBadge state={run.state} />
      </h1>
      <p class="muted facts">
        <span>{run.id}</span>
        <span>{run.runtime} runtime</span>
        <span>started {time(run.createdAt)}</span>
        <span>ran {runDuration(run, now)}</span>
        <span>by {run.createdBy}</span>
        {run.appVersion ? <span>app version {run.appVersion}</span> : null}
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {(run.state === 'FAILED' || run.state === 'KILLED' || run.state === 'REJECTED') && <Failure run={run} base={base} ns={ns} />}
      {(run.state === 'PENDING' || run.state === 'STARTING') && (run.status.message || run.message) && (
        <section class="waiting" role="status" aria-label="Why the run waits">
          <b>{run.state}</b>
          {run.status.reason ? ` (${run.status.reason})` : ''}: {run.status.message ?? run.message}
        </section>
      )}
      {canOperate ? (
        <Controls run={run} base={base} onDone={load} />
      ) : (
        <p class="muted" data-testid="read-only">
          Your token is a viewer in {ns}: it can look at runs but not stop, kill or scale them.
        </p>
      )}
      <Section title="Timeline">
        <ol class="timeline">
          {run.history.map((h) => (
            <li key={h.id}>
              <time dateTime={h.at}>{time(h.at)}</time> <StateBadge state={h.to} />
              {h.reason && <b class="reason"> {h.reason}</b>}
              {h.message && <span class="message"> {h.message}</span>}
            </li>
          ))}
        </ol>
      </Section>
      <Section title="Runnables and instances">
        {run.status.runnables.length === 0 && <p class="muted">The runtime no longer has this run's objects; the timeline and logs above and below are what the master kept.</p>}
        {run.status.runnables.map((r) => (
          <Runnable key={r.name} runnable={r} base={base} canOperate={canOperate && !ended} onDone={load} />
        ))}
      </Section>
      <Section title="Resources">
        <Resources report={resources} />
      </Section>
      <Section title="Logs">
        <Logs ns={ns} id={id} live={!ended} />
      </Section>
      <details class="spec">
        <summary>Spec</summary>
        <pre>{JSON.stringify(run.spec, null, 2)}</pre>
      </details>
    </main>
  );
}

function Section(props: { title: string; children: ComponentChildren }) {
  const slug = props.title.toLowerCase().replace(/\W+/g, '-');
  return (
    <section aria-labelledby={`h-${slug}`}>
      <h2 id={`h-${slug}`}>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** Why the run did not complete, in the master's words, with the last lines it printed. */
function Failure(props: { run: RunDetail; base: string; ns: string }) {
  const [tail, setTail] = useState<LogLine[]>();
  useEffect(() => {
    const got: LogLine[] = [];
    readLogs(props.ns, props.run.id, { before: END, limit: 10 }, (l) => got.push(...l)).then(
      () => setTail(got),
      () => setTail([]),
    );
  }, [props.run.id, props.run.state]);
  const last = [...props.run.history].reverse().find((h) => h.to === props.run.state);
  const reason = props.run.reason ?? last?.reason ?? props.run.status.reason;
  const message = props.run.message ?? last?.message ?? props.run.status.message;
  const failed = props.run.status.runnables.flatMap((r) => r.instances.filter((i) => i.reason || (i.exitCode ?? 0) !== 0).map((i) => ({ r: r.name, i })));
  return (
    <section class="failure" role="alert" aria-label="Why the run ended">
      <h2>
        {props.run.state}
        {reason ? `: ${reason}` : ''}
      </h2>
      {message && <p class="message">{message}</p>}
      {failed.length > 0 && (
        <ul>
          {failed.map(({ r, i }) => (
            <li>
              {r}/{i.id}: {i.reason ?? 'exited'}
              {i.exitCode !== undefined ? ` (exit code ${i.exitCode})` : ''}
              {i.message ? ` — ${i.message}` : ''}
            </li>
          ))}
        </ul>
      )}
      {tail && tail.length > 0 && (
        <>
          <h3>Last lines</h3>
          <pre class="tail">{tail.map((l) => `${l.runnable}/${l.instance} ${l.line}`).join('\n')}</pre>
        </>
      )}
    </section>
  );
}

interface Pending {
  title: string;
  body: ComponentChildren;
  confirm: string;
  danger?: boolean;
  action: () => Promise<string>;
}

/** Asks before every control command and shows the master's answer (or its error). */
function useConfirm(onDone: () => void) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [pending, setPending] = useState<Pending>();
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string }>();
  useEffect(() => {
    if (pending && dialog.current && !dialog.current.open) dialog.current.showModal();
  }, [pending]);
  const ask = (p: Pending) => {
    setResult(undefined);
    setPending(p);
  };
  const close = () => {
    dialog.current?.close();
    setPending(undefined);
  };
  const go = async () => {
    if (!pending) return;
    setBusy(true);
    try {
      setResult({ ok: true, text: await pending.action() });
      onDone();
    } catch (e) {
      setResult({ ok: false, text: `${pending.confirm} refused: ${(e as Error).message}` });
    } finally {
      setBusy(false);
      close();
    }
  };
  const view = (
    <>
      <dialog ref={dialog} onClose={() => setPending(undefined)} aria-labelledby="confirm-title">
        {pending && (
          <form
            method="dialog"
            onSubmit={(e) => {
              e.preventDefault();
              void go();
            }}
          >
            <h2 id="confirm-title">{pending.title}</h2>
            <div>{pending.body}</div>
            <div class="buttons">
              <button type="button" onClick={close} autofocus>
                Cancel
              </button>
              <button type="submit" class={pending.danger ? 'danger' : 'primary'} disabled={busy}>
                {pending.confirm}
              </button>
            </div>
          </form>
        )}
      </dialog>
      {result && (
        <p class={result.ok ? 'ok' : 'error'} role="status" data-testid="control-result">
          {result.text}
        </p>
      )}
    </>
  );
  return { ask, view };
}

function Controls(props: { run: RunDetail; base: string; onDone: () => void }) {
  const { ask, view } = useConfirm(props.onDone);
  const ended = TERMINAL.has(props.run.state);
  const stopTimeout = (props.run.spec as { stopTimeout?: unknown }).stopTimeout;
  return (
    <div class="controls">
      <button
        type="button"
        disabled={ended}
        onClick={() =>
          ask({
            title: `Stop run ${props.run.id}?`,
            body: (
              <>
                <p>Each instance is asked to shut down and then killed after the grace period.</p>
                <label>
                  Grace period (s){' '}
                  <input type="number" name="grace" min={0} max={86400} placeholder={stopTimeout !== undefined ? `spec: ${String(stopTimeout)}` : '30'} />
                </label>
              </>
            ),
            confirm: 'Stop',
            action: async () => {
              const input = (document.querySelector('dialog[open] input[name=grace]') as HTMLInputElement | null)?.value ?? '';
              const r = await request<{ state: string }>('POST', `${props.base}/stop`, input !== '' ? { gracePeriodSeconds: Number(input) } : {});
              return `Stop accepted: the run is ${r.state}.`;
            },
          })
        }
      >
        Stop
      </button>
      <button
        type="button"
        class="danger"
        disabled={ended}
        onClick={() =>
          ask({
            title: `Kill run ${props.run.id}?`,
            body: <p>Every instance ends at once, without a shutdown.</p>,
            confirm: 'Kill',
            danger: true,
            action: async () => {
              const r = await request<{ state: string }>('POST', `${props.base}/kill`, {});
              return `Kill accepted: the run is ${r.state}.`;
            },
          })
        }
      >
        Kill
      </button>
      {ended && <span class="muted"> The run ended {props.run.finishedAt ? time(props.run.finishedAt) : ''}; there is nothing to control.</span>}
      {view}
    </div>
  );
}


function Runnable(props: { runnable: RunDetail['status']['runnables'][number]; base: string; canOperate: boolean; onDone: () => void }) {
  const r = props.runnable;
  const { ask, view } = useConfirm(props.onDone);
  const [count, setCount] = useState(String(r.desired));
  return (
    <div class="runnable" data-runnable={r.name}>
      <h3>
        {r.name} <span class="muted">{r.kind}, {r.running} of {r.desired} running</span>
      </h3>
      {props.canOperate && (
        <form
          class="scale"
          onSubmit={(e) => {
            e.preventDefault();
            const n = Number(count);
            ask({
              title: `Scale ${r.name} to ${n}?`,
              body: (
                <p>
                  {r.name} goes from {r.desired} to {n} instance{n === 1 ? '' : 's'}.
                </p>
              ),
              confirm: 'Scale',
              action: async () => {
                await request('POST', `${props.base}/scale`, { runnable: r.name, instances: n });
                return `Scale accepted: ${r.name} is asked for ${n} instance${n === 1 ? '' : 's'}.`;
              },
            });
          }}
        >
          <label>
            Instances <input type="number" min={0} max={10000} required value={count} onInput={(e) => setCount((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit">Scale</button>
        </form>
      )}
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Instance</th>
              <th scope="col">State</th>
              <th scope="col">Host</th>
              <th scope="col">Restarts</th>
              <th scope="col">Exit code</th>
              <th scope="col">Reason</th>
              {props.canOperate && <th scope="col">Action</th>}
            </tr>
          </thead>
          <tbody>
            {r.instances.map((i) => (
              <tr data-instance={i.id}>
                <td title={i.name}>{i.id}</td>
                <td>
                  <StateBadge state={i.state} />
                </td>
                <td>{i.host ?? ''}</td>
                <td>{i.restarts ?? 0}</td>
                <td>{i.exitCode ?? ''}</td>
                <td>
                  {i.reason ?? ''}
                  {i.message ? <span class="muted"> {i.message}</span> : null}
                </td>
                {props.canOperate && (
                  <td>
                    <button
                      type="button"
                      class="small"
                      onClick={() =>
                        ask({
                          title: `Restart ${r.name}/${i.id}?`,
                          body: <p>The instance is stopped and started again; the others keep running.</p>,
                          confirm: 'Restart',
                          action: async () => {
                            await request('POST', `${props.base}/restart`, { runnable: r.name, instances: [i.id] });
                            return `Restart accepted: ${r.name}/${i.id} is restarting.`;
                          },
                        })
                      }
                    >
                      Restart
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {view}
    </div>
  );
}

function Resources(props: { report?: ResourceReport }) {
  const report = props.report;
  if (!report) return <p class="muted">…</p>;
  if (report.instances.length === 0) return <p class="muted">{report.usageUnavailable ?? 'No instances to report.'}</p>;
  const mib = (b?: number) => (b === undefined ? '' : `${(b / (1 << 20)).toFixed(1)} MiB`);
  return (
    <div class="scroll">
      <table>
        <thead>
          <tr>
            <th scope="col">Instance</th>
            <th scope="col">Host</th>
            <th scope="col">CPU asked</th>
            <th scope="col">Memory asked</th>
            <th scope="col">CPU used</th>
            <th scope="col">Memory used</th>
          </tr>
        </thead>
        <tbody>
          {report.instances.map((i) => (
            <tr>
              <td>
                {i.runnable}/{i.instance}
              </td>
              <td>{i.host ?? ''}</td>
              <td>{i.cpu}</td>
              <td>{i.memory}</td>
              <td>{i.usage?.cpuMillicores !== undefined ? `${i.usage.cpuMillicores}m` : ''}</td>
              <td>{mib(i.usage?.memoryBytes)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {report.usageUnavailable && <p class="muted">{report.usageUnavailable}</p>}
    </div>
  );
}

const MAX_LINES = 20_000;

/** The run's archived output: the newest lines first loaded, earlier ones paged back, followed live while the run runs, searchable. */
function Logs(props: { ns: string; id: string; live: boolean }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [earlier, setEarlier] = useState(false);
  const [search, setSearch] = useState('');
  const [following, setFollowing] = useState(false);
  const [error, setError] = useState<string>();
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const lastSeq = useRef(0);

  const append = (batch: LogLine[]) => {
    const fresh = batch.filter((l) => l.seq > lastSeq.current);
    if (!fresh.length) return;
    lastSeq.current = fresh[fresh.length - 1].seq;
    setLines((old) => {
      const all = old.concat(fresh);
      if (all.length <= MAX_LINES) return all;
      setEarlier(true);
      return all.slice(all.length - MAX_LINES);
    });
  };

  useEffect(() => {
    const abort = new AbortController();
    void (async () => {
      try {
        const first: LogLine[] = [];
        await readLogs(props.ns, props.id, { before: END, limit: 500 }, (l) => first.push(...l), abort.signal);
        setEarlier((first[0]?.seq ?? 1) > 1);
        append(first);
        if (!props.live) return;
        setFollowing(true);
        await readLogs(props.ns, props.id, { follow: true, after: lastSeq.current }, append, abort.signal);
      } catch (e) {
        if (!abort.signal.aborted) setError((e as Error).message);
      } finally {
        if (!abort.signal.aborted) setFollowing(false);
      }
    })();
    return () => abort.abort();
  }, [props.ns, props.id, props.live]);

  useEffect(() => {
    if (stick.current && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines]);

  const loadEarlier = async () => {
    const older: LogLine[] = [];
    try {
      await readLogs(props.ns, props.id, { before: lines[0]?.seq ?? END, limit: 1000 }, (l) => older.push(...l));
      setEarlier((older[0]?.seq ?? 1) > 1);
      stick.current = false;
      setLines((old) => older.concat(old));
    } catch (e) {
      setError((e as Error).message);
    }
  };

  const needle = search.trim().toLowerCase();
  const shown = needle ? lines.filter((l) => l.line.toLowerCase().includes(needle)) : lines;
  return (
    <div class="logs">
      <div class="log-bar">
        <label>
          Search <input type="search" value={search} onInput={(e) => setSearch((e.target as HTMLInputElement).value)} placeholder="text in the loaded lines" />
        </label>
        <span class="muted" role="status">
          {needle ? `${shown.length} of ${lines.length} lines match` : `${lines.length} lines`}
          {following ? ' · following' : ''}
        </span>
        {earlier && (
          <button type="button" onClick={() => void loadEarlier()}>
            Earlier lines
          </button>
        )}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div
        class="log-lines"
        ref={box}
        tabIndex={0}
        aria-label="Log lines"
        onScroll={(e) => {
          const el = e.currentTarget as HTMLDivElement;
          stick.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
        }}
      >
        {shown.length === 0 ? (
          <span class="muted">{props.live ? 'No output yet.' : needle ? 'No line matches.' : 'The run printed nothing.'}</span>
        ) : (
          shown.map((l) => (
            <div class={l.stream === 'stderr' ? 'line err' : 'line'} key={l.seq} data-seq={l.seq}>
              <span class="src">
                {l.runnable}/{l.instance}
              </span>
              {l.line}
            </div>
          ))
        )}
      </div>
    </div>
  );
}
