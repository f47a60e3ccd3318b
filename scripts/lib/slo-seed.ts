/**
 * Seeds the SLOs of `SLUICE_SLOS_FILE` at start-up (idempotent): each one created, or brought to
 * the file's name, target, window and threshold; each change audited (`slo.seeded`). A malformed
 * file, or an ID whose stored kind or scope differs, stops the start with a message naming it.
 */
import fs from 'node:fs/promises';
import type { Db } from '../../db/database.js';
import { upsertSeededSlo } from '../../db/repositories/slos.js';
import { appendAudit } from '../../db/repositories/audit.js';
import { parseSloSeed } from '../../domain/slo.js';

/** Seeds the file's SLOs; returns how many were created or updated. Nothing to do when `file` is null. */
export async function ensureSlos(db: Db, file: string | null): Promise<{ created: number; updated: number }> {
  const out = { created: 0, updated: 0 };
  if (file === null) return out;
  let json: unknown;
  try {
    json = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (err) {
    throw new Error(`SLUICE_SLOS_FILE ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  let seeds;
  try {
    seeds = parseSloSeed(json);
  } catch (err) {
    throw new Error(`SLUICE_SLOS_FILE ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  for (const s of seeds) {
    const r = await upsertSeededSlo(db, s);
    if (r === 'conflict') throw new Error(`SLUICE_SLOS_FILE ${file}: ${s.id} exists with another kind or scope; give the changed objective a new id`);
    if (r === 'unchanged') continue;
    out[r] += 1;
    await appendAudit(db, {
      actor: 'system:config', tenantId: null, action: 'slo.seeded', target: `slo:${s.id}`,
      data: { result: r, name: s.name, kind: s.kind, scope: { type: s.scopeType, value: s.scopeValue }, target_ppm: s.targetPpm, window: s.window, threshold_ms: s.thresholdMs },
      idempotencyKey: null, at: new Date(),
    });
  }
  return out;
}
