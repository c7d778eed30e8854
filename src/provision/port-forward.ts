// A port-forward to the in-cluster registry, opened by weft itself (as `kubectl port-forward`
// does): a listener on 127.0.0.1 whose connections go through the API server's pod portforward
// subresource to the registry pod. Pushing to 127.0.0.1 lets weft send the registry's
// credentials (it never sends credentials over plain HTTP to any other host).
import net from 'node:net';
import { CoreV1Api, PortForward, type KubeConfig } from '@kubernetes/client-node';
import { REGISTRY_NAME, REGISTRY_PORT, WEFT_NAMESPACE } from './objects.js';
import { ProvisionError } from './provisioners.js';

export interface RegistryForward {
  /** 127.0.0.1:<port>: push here (`weft build --output docker://<address>/app:1`). */
  address: string;
  pod: string;
  close(): Promise<void>;
}

export async function forwardToRegistry(kc: KubeConfig, options: { localPort?: number } = {}): Promise<RegistryForward> {
  const core = kc.makeApiClient(CoreV1Api);
  const pods = await core.listNamespacedPod({ namespace: WEFT_NAMESPACE, labelSelector: `app.kubernetes.io/name=${REGISTRY_NAME}` });
  const pod = pods.items.find((p) => p.status?.phase === 'Running' && (p.status.containerStatuses ?? []).every((c) => c.ready));
  if (!pod?.metadata?.name) {
    throw new ProvisionError(
      `no ready registry pod in ${WEFT_NAMESPACE} (${pods.items.length} pod(s) found): provision the cluster with --registry-image, then check \`weft cluster status\``,
    );
  }
  const podName = pod.metadata.name;
  const forward = new PortForward(kc);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    forward
      .portForward(WEFT_NAMESPACE, podName, [REGISTRY_PORT], socket, null, socket)
      .then((ws) => {
        const close = () => socket.end();
        if (typeof ws === 'function') return;
        ws.on('close', close);
        ws.on('error', (error: Error) => socket.destroy(error));
        socket.on('close', () => ws.close());
      })
      .catch((error: Error) => socket.destroy(error));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new ProvisionError(error.code === 'EADDRINUSE' ? `127.0.0.1:${options.localPort} is in use: pick another --port` : `cannot listen on 127.0.0.1: ${error.message}`)),
    );
    server.listen(options.localPort ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    pod: podName,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
