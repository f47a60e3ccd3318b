/** The order in which a request tries a model's deployments. Pure. */
import type { DeploymentTarget } from '../contracts/chat.js';

/**
 * Orders a model's deployments for one request: by priority (the fallback order); within a
 * priority, a weighted shuffle by `random` (in a workflow, its seeded Math.random, so replays agree).
 */
export function fallbackOrder(deployments: readonly DeploymentTarget[], random: () => number): DeploymentTarget[] {
  const byPriority = new Map<number, DeploymentTarget[]>();
  for (const d of deployments) byPriority.set(d.priority, [...(byPriority.get(d.priority) ?? []), d]);
  const ordered: DeploymentTarget[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = [...(byPriority.get(priority) ?? [])];
    while (group.length > 0) {
      const total = group.reduce((s, d) => s + d.weight, 0);
      let pick = random() * total;
      const index = group.findIndex((d) => (pick -= d.weight) < 0);
      ordered.push(...group.splice(index < 0 ? group.length - 1 : index, 1));
    }
  }
  return ordered;
}
