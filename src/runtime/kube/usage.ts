// Measured usage of a run's pods, from what a cluster offers: the metrics API (metrics.k8s.io,
// served by metrics-server) first, else each node's kubelet summary through the API server's
// node proxy (needs nodes/proxy). Neither is guaranteed: the caller reports why when both fail.
import type { CustomObjectsApi, CoreV1Api, V1Pod } from '@kubernetes/client-node';

export interface PodUsage {
  cpuMillicores?: number;
  memoryBytes?: number;
}

const units: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };

/** A Kubernetes quantity ("12345678n", "2048Ki", "1.5") as a plain number of base units. */
export function quantityValue(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(n|u|m|k|M|G|Ki|Mi|Gi|Ti)?$/.exec(text.trim());
  return m ? Number(m[1]) * units[m[2] ?? ''] : undefined;
}

interface MetricsPod { metadata?: { name?: string }; containers?: Array<{ name: string; usage?: { cpu?: string; memory?: string } }> }
interface Summary { pods?: Array<{ podRef?: { name?: string; namespace?: string }; containers?: Array<{ name: string; cpu?: { usageNanoCores?: number }; memory?: { workingSetBytes?: number } }> }> }

/** Usage of `container` in each pod, keyed by pod name, or the reason none could be read. */
export async function readPodUsage(
  clients: { core: CoreV1Api; custom: CustomObjectsApi },
  namespace: string,
  pods: V1Pod[],
  container: string,
): Promise<{ usage: Map<string, PodUsage>; unavailable?: string }> {
  const usage = new Map<string, PodUsage>();
  const reasons: string[] = [];
  try {
    const list = (await clients.custom.listNamespacedCustomObject({ group: 'metrics.k8s.io', version: 'v1beta1', namespace, plural: 'pods' })) as { items?: MetricsPod[] };
    for (const item of list.items ?? []) {
      const c = item.containers?.find((x) => x.name === container);
      if (!item.metadata?.name || !c?.usage) continue;
      const cpu = c.usage.cpu ? quantityValue(c.usage.cpu) : undefined;
      const memory = c.usage.memory ? quantityValue(c.usage.memory) : undefined;
      usage.set(item.metadata.name, { cpuMillicores: cpu === undefined ? undefined : Math.round(cpu * 1000), memoryBytes: memory });
    }
    if (pods.every((p) => usage.has(p.metadata?.name ?? ''))) return { usage };
  } catch (error) {
    reasons.push(`metrics.k8s.io: ${shortError(error)}`);
  }
  const nodes = [...new Set(pods.map((p) => p.spec?.nodeName).filter((n): n is string => !!n))];
  for (const node of nodes) {
    try {
      const text = await clients.core.connectGetNodeProxyWithPath({ name: node, path: 'stats/summary' });
      const summary = (typeof text === 'string' ? JSON.parse(text) : text) as Summary;
      for (const pod of summary.pods ?? []) {
        if (pod.podRef?.namespace !== namespace || !pod.podRef.name || usage.has(pod.podRef.name)) continue;
        const c = pod.containers?.find((x) => x.name === container);
        if (!c) continue;
        usage.set(pod.podRef.name, {
          cpuMillicores: c.cpu?.usageNanoCores === undefined ? undefined : Math.round(c.cpu.usageNanoCores / 1e6),
          memoryBytes: c.memory?.workingSetBytes,
        });
      }
    } catch (error) {
      reasons.push(`kubelet summary of node ${node} through the API server: ${shortError(error)}`);
    }
  }
  const missing = pods.filter((p) => !usage.has(p.metadata?.name ?? '')).length;
  return { usage, unavailable: missing ? `usage not measured for ${missing} pod(s): ${reasons.join('; ') || 'not reported yet'}` : undefined };
}

function shortError(error: unknown): string {
  const e = error as { code?: number; body?: unknown; message?: string };
  let text = e.message ?? String(error);
  if (typeof e.body === 'string') {
    try {
      text = (JSON.parse(e.body) as { message?: string }).message ?? text;
    } catch {
      text = e.body.slice(0, 200);
    }
  }
  return `${e.code ? `${e.code} ` : ''}${text}`.split('\n')[0].slice(0, 300);
}
