// Placeholder until the registry client lands: lets other capabilities compile
// against the RemoteTransport they will use.
import type { RemoteTransport } from '../../image/transport.js';

export interface RemoteTransportOptions {
  /** Hosts to talk to over plain HTTP (loopback hosts always may). */
  insecureRegistries?: string[];
}

export function createRemoteTransport(_options: RemoteTransportOptions = {}): RemoteTransport {
  const unavailable = (): never => {
    throw new Error('registry transport (docker://) is not available in this build yet');
  };
  return { open: async () => unavailable(), write: async () => unavailable() };
}
