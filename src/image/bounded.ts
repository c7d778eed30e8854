// A bounded parallel map, in its own module so that light importers (the OCI
// layout writer, which `weft copy` loads) do not pull in the layer writer.

/** Runs async jobs with at most `limit` in flight; results in input order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, job: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length && failed === undefined) {
      const index = next++;
      try {
        results[index] = await job(items[index], index);
      } catch (error) {
        failed ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed !== undefined) throw failed;
  return results;
}

/**
 * mapBounded, starting the largest items first so the longest job (a big
 * layer's transfer) is not left for the end; results still in input order.
 */
export async function mapBoundedLargestFirst<T extends { size: number }, R>(items: readonly T[], limit: number, job: (item: T) => Promise<R>): Promise<R[]> {
  const order = items.map((_, index) => index).sort((a, b) => items[b]!.size - items[a]!.size);
  const results = new Array<R>(items.length);
  await mapBounded(order, limit, async (index) => {
    results[index] = await job(items[index]!);
  });
  return results;
}
