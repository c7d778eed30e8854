// The weft dashboard: sign-in with a master token, the runs of a namespace, one run.
// Routes live in the URL's hash (#/ns/<ns>/runs[/<run>]), so the master serves one page.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { request, roleIn, session, type Whoami } from './api';
import { RunPage } from './run';
import { href } from './util';
import { RunsPage } from './runs';
import './style.css';

export interface Route {
  ns?: string;
  run?: string;
  query: URLSearchParams;
}

function parseHash(): Route {
  const [path, qs] = location.hash.replace(/^#/, '').split('?', 2);
  const parts = (path ?? '').split('/').filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(qs ?? '');
  if (parts[0] === 'ns' && parts[1]) return { ns: parts[1], run: parts[2] === 'runs' ? parts[3] : undefined, query };
  return { query };
}

/** The namespace to open first: one the token names, else "default". */
function firstNamespace(me: Whoami): string {
  return Object.keys(me.roles).find((ns) => ns !== '*') ?? 'default';
}

function SignIn(props: { message?: string; onSignedIn: (me: Whoami) => void }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState(props.message);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    session.set(value.trim());
    try {
      props.onSignedIn(await request<Whoami>('GET', '/api/v1/whoami'));
    } catch (err) {
      session.set(undefined);
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <h1>weft</h1>
      <form onSubmit={submit} aria-describedby="signin-help">
        <label for="token">Master token</label>
        <input id="token" name="token" type="password" autocomplete="off" required value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} autofocus />
        <button type="submit" disabled={busy || !value.trim()}>
          Sign in
        </button>
        <p id="signin-help" class="muted">
          A token from <code>weft master --admin-token-file</code> or <code>POST /api/v1/tokens</code>. It is kept in this tab only.
        </p>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

function NamespacePicker(props: { me: Whoami; ns: string }) {
  const named = Object.keys(props.me.roles).filter((n) => n !== '*');
  const wildcard = '*' in props.me.roles;
  const [typed, setTyped] = useState(props.ns);
  useEffect(() => setTyped(props.ns), [props.ns]);
  const go = (ns: string) => {
    if (ns && ns !== props.ns) location.hash = href(ns);
  };
  if (!wildcard)
    return (
      <label class="ns">
        Namespace{' '}
        <select value={props.ns} onChange={(e) => go((e.target as HTMLSelectElement).value)}>
          {(named.includes(props.ns) ? named : [props.ns, ...named]).map((n) => (
            <option value={n}>{n}</option>
          ))}
        </select>
      </label>
    );
  return (
    <form
      class="ns"
      onSubmit={(e) => {
        e.preventDefault();
        go(typed.trim());
      }}
    >
      <label>
        Namespace <input list="namespaces" value={typed} size={12} pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?" onInput={(e) => setTyped((e.target as HTMLInputElement).value)} />
      </label>
      <datalist id="namespaces">
        {named.map((n) => (
          <option value={n} />
        ))}
      </datalist>
      <button type="submit">Open</button>
    </form>
  );
}

function App() {
  const [me, setMe] = useState<Whoami>();
  const [checking, setChecking] = useState(!!session.token);
  const [message, setMessage] = useState<string>();
  const [route, setRoute] = useState(parseHash);

  useEffect(() => {
    const onHash = () => setRoute(parseHash());
    addEventListener('hashchange', onHash);
    session.onUnauthorized((m) => {
      session.set(undefined);
      setMe(undefined);
      setMessage(`Signed out: ${m}`);
    });
    if (session.token)
      request<Whoami>('GET', '/api/v1/whoami')
        .then(setMe, (e: Error) => setMessage(e.message))
        .finally(() => setChecking(false));
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    if (me && !route.ns) location.replace(href(firstNamespace(me)));
  }, [me, route.ns]);

  if (checking) return <p class="muted loading">Checking the token…</p>;
  if (!me)
    return (
      <SignIn
        message={message}
        onSignedIn={(who) => {
          setMessage(undefined);
          setMe(who);
        }}
      />
    );
  if (!route.ns) return null;
  const role = roleIn(me, route.ns);
  return (
    <>
      <header class="top">
        <a class="brand" href={href(route.ns)}>
          weft
        </a>
        <NamespacePicker me={me} ns={route.ns} />
        <span class="who" data-role={role ?? 'none'}>
          {me.name} · {role ?? 'no role here'}
        </span>
        <button
          type="button"
          class="link"
          onClick={() => {
            session.set(undefined);
            setMe(undefined);
            setMessage(undefined);
          }}
        >
          Sign out
        </button>
      </header>
      {!role ? (
        <main>
          <p class="error" role="alert">
            Token {me.name} has no role in namespace {route.ns}; it may see {Object.keys(me.roles).join(', ')}.
          </p>
        </main>
      ) : route.run ? (
        <RunPage key={`${route.ns}/${route.run}`} me={me} ns={route.ns} id={route.run} />
      ) : (
        <RunsPage key={`${route.ns}?${route.query}`} ns={route.ns} query={route.query} />
      )}
    </>
  );
}

render(<App />, document.getElementById('app')!);
document.getElementById('boot')?.remove();
