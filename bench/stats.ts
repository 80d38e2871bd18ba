// The few statistics the benchmarks report.

/** The `q`-quantile (0 to 1) of values already sorted ascending: the value at rank ⌊q·n⌋. NaN for none. */
export function quantileOfSorted(sorted: ArrayLike<number>, q: number): number {
  return sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number) : Number.NaN;
}

/** The `q`-quantile (0 to 1) of `values`, in any order. */
export const quantile = (values: readonly number[], q: number): number =>
  quantileOfSorted(
    [...values].sort((a, b) => a - b),
    q,
  );

/** The middle value, or the mean of the two middle ones. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
