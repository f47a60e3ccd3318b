/** Sticky experiment assignment by hash: the same experiment and subject always get the same variant. */
import { createHash } from 'node:crypto';

export interface WeightedVariant {
  name: string;
  weight: number;
}

/**
 * Maps (experiment, subject) to a bucket in [0, total weight) with SHA-256 and picks the variant
 * whose cumulative weight range holds it. Variants are taken in name order so the result does not
 * depend on the order rows come back from the database.
 */
export function assignVariant<V extends WeightedVariant>(experimentId: string, subject: string, variants: readonly V[]): V {
  if (variants.length === 0) throw new Error(`experiment ${experimentId} has no variants`);
  const sorted = [...variants].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const total = sorted.reduce((sum, v) => sum + v.weight, 0);
  if (!Number.isInteger(total) || total <= 0) throw new Error(`experiment ${experimentId} has no positive weight`);
  const digest = createHash('sha256').update(`${experimentId}\u0000${subject}`).digest();
  const bucket = Number(digest.readBigUInt64BE(0) % BigInt(total));
  let upTo = 0;
  for (const v of sorted) {
    upTo += v.weight;
    if (bucket < upTo) return v;
  }
  return sorted[sorted.length - 1] as V;
}
