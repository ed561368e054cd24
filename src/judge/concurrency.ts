/**
 * Bounded-concurrency map: judges fan out one conversation per response, and an unbounded fan-out would
 * flood a judge server (and the client's own connection pool) during a large batch.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const n = Math.max(1, Math.min(Math.floor(limit) || 1, items.length));
  const workers = Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return out;
}
