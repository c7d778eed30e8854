// Where plain HTTP is allowed and where credentials may go.
//
// Plain HTTP is used only for loopback hosts (127.0.0.0/8, ::1, localhost) or
// hosts the user marked insecure (--insecure-registry, WEFT_INSECURE_REGISTRIES).
// Credentials (Basic, bearer tokens, identity tokens) are NEVER sent over plain
// HTTP to a host that is not loopback, even a host marked insecure.
import { isIPv4 } from 'node:net';

/** Splits "host[:port]" (with optional [v6] brackets) into its host name and port. */
export function splitHostPort(hostPort: string): { host: string; port?: string } {
  if (hostPort.startsWith('[')) {
    const end = hostPort.indexOf(']');
    const host = hostPort.slice(1, end);
    const rest = hostPort.slice(end + 1);
    return { host, port: rest.startsWith(':') ? rest.slice(1) : undefined };
  }
  const colon = hostPort.lastIndexOf(':');
  if (colon >= 0 && hostPort.indexOf(':') === colon) return { host: hostPort.slice(0, colon), port: hostPort.slice(colon + 1) };
  return { host: hostPort };
}

export function isLoopbackHost(hostPortOrHost: string): boolean {
  const { host } = splitHostPort(hostPortOrHost);
  const name = host.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (name === '::1' || name === '0:0:0:0:0:0:0:1') return true;
  if (isIPv4(name)) return name.startsWith('127.');
  if (name.startsWith('::ffff:')) return isIPv4(name.slice(7)) && name.slice(7).startsWith('127.');
  return false;
}

/** Insecure registries from the option list plus WEFT_INSECURE_REGISTRIES (comma or space separated). */
export function insecureRegistryList(explicit: string[] = [], env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = (env.WEFT_INSECURE_REGISTRIES ?? '').split(/[\s,]+/).filter(Boolean);
  return [...explicit, ...fromEnv].map((h) => h.toLowerCase().replace(/^https?:\/\//, '').replace(/\/.*$/, ''));
}

/** May weft talk plain HTTP to this registry (host[:port])? */
export function plainHttpAllowed(hostPort: string, insecure: string[]): boolean {
  if (isLoopbackHost(hostPort)) return true;
  const lower = hostPort.toLowerCase();
  const { host } = splitHostPort(lower);
  return insecure.includes(lower) || insecure.includes(host);
}

/** May a credential be sent to this URL? Only over HTTPS, or plain HTTP to a loopback host. */
export function mayCarryCredentials(url: URL): boolean {
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && isLoopbackHost(url.host);
}
