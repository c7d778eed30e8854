// Server-side apply of the hooks' objects (idempotent: applying the same objects again
// changes nothing, not even a resourceVersion) and deletion that waits until they are gone.
import { KubernetesObjectApi, PatchStrategy, type KubeConfig } from '@kubernetes/client-node';
import type { Obj } from './objects.js';

export const FIELD_MANAGER = 'weft-provision';

export class ApplyError extends Error {
  override name = 'ApplyError';
}

function describe(o: Obj): string {
  return `${o.kind} ${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name}`;
}

function statusOf(error: unknown): number | undefined {
  const e = error as { code?: number; statusCode?: number; response?: { statusCode?: number } };
  return e.code ?? e.statusCode ?? e.response?.statusCode;
}

function bodyMessage(error: unknown): string {
  const e = error as { body?: unknown; message?: string };
  try {
    const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
    const message = (body as { message?: string } | undefined)?.message;
    if (message) return message;
  } catch {
    // not JSON: fall through
  }
  return e.message ?? String(error);
}

export class ObjectClient {
  private readonly api: KubernetesObjectApi;

  constructor(kc: KubeConfig) {
    this.api = KubernetesObjectApi.makeApiClient(kc);
  }

  /** Server-side apply, in order (namespaces before what lives in them). */
  async apply(objects: readonly Obj[]): Promise<void> {
    for (const o of objects) {
      try {
        await this.api.patch(o, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
      } catch (error) {
        const status = statusOf(error);
        const hint = status === 403 ? ' (the kubeconfig\'s user may not do this: provisioning needs cluster-admin)' : '';
        throw new ApplyError(`cannot apply ${describe(o)}: ${bodyMessage(error)}${hint}`);
      }
    }
  }

  async read(o: Obj): Promise<Obj | undefined> {
    try {
      return (await this.api.read({ apiVersion: o.apiVersion!, kind: o.kind!, metadata: { name: o.metadata!.name!, namespace: o.metadata?.namespace } })) as Obj;
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw new ApplyError(`cannot read ${describe(o)}: ${bodyMessage(error)}`);
    }
  }

  /** Deletes in reverse order (background propagation) and waits until every object is gone. */
  async delete(objects: readonly Obj[], timeoutMs = 180_000): Promise<void> {
    for (const o of [...objects].reverse()) {
      try {
        await this.api.delete(o, undefined, undefined, undefined, undefined, 'Background');
      } catch (error) {
        if (statusOf(error) !== 404) throw new ApplyError(`cannot delete ${describe(o)}: ${bodyMessage(error)}`);
      }
    }
    const deadline = Date.now() + timeoutMs;
    for (const o of objects) {
      while ((await this.read(o)) !== undefined) {
        if (Date.now() > deadline) throw new ApplyError(`${describe(o)} is still there ${Math.round(timeoutMs / 1000)} s after its deletion (a finalizer that does not finish?)`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
}
