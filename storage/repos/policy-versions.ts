/**
 * Stored versions of the generated privacy policy (P22). A version is never changed or deleted:
 * the table is the history of what was published, and when each text was (or will be) in force.
 */
import { EntitySchema } from 'typeorm';
import { bigintNumber, Db, checkText, millis } from '../db.js';
import type { PolicyVersion, NewPolicyVersion, PolicyVersionRepository } from '../types.js';

export interface PolicyVersionRow {
  id: number;
  textHash: string;
  document: string;
  announcedAt: number;
  effectiveAt: number;
  technicalReason: string | null;
}

export const PolicyVersionEntity = new EntitySchema<PolicyVersionRow>({
  name: 'PolicyVersion',
  tableName: 'policy_versions',
  columns: {
    id: { type: 'integer', primary: true, generated: 'increment' },
    textHash: { name: 'text_hash', type: 'varchar', length: 64 },
    document: { type: 'text' },
    announcedAt: { name: 'announced_at', type: 'bigint', transformer: bigintNumber },
    effectiveAt: { name: 'effective_at', type: 'bigint', transformer: bigintNumber },
    technicalReason: { name: 'technical_reason', type: 'varchar', length: 1000, nullable: true },
  },
});

export const POLICY_LIMITS = { hash: 64, technicalReason: 1000 } as const;

function toVersion(row: PolicyVersionRow): PolicyVersion {
  return {
    id: Number(row.id),
    hash: row.textHash,
    document: row.document,
    announcedAt: new Date(Number(row.announcedAt)),
    effectiveAt: new Date(Number(row.effectiveAt)),
    technicalReason: row.technicalReason ?? null,
  };
}

export class TypeOrmPolicyVersionRepository implements PolicyVersionRepository {
  constructor(private readonly db: Db) {}

  async list(): Promise<PolicyVersion[]> {
    const rows = await this.db.run((m) => m.find(PolicyVersionEntity, { order: { id: 'ASC' } }));
    return rows.map(toVersion);
  }

  async add(version: NewPolicyVersion, afterId: number | null): Promise<PolicyVersion | null> {
    const textHash = checkText('hash', version.hash, POLICY_LIMITS.hash);
    if (typeof version.document !== 'string') throw new TypeError('document must be a string');
    const announcedAt = millis('announcedAt', version.announcedAt);
    const effectiveAt = millis('effectiveAt', version.effectiveAt);
    const technicalReason = version.technicalReason === null ? null : checkText('technicalReason', version.technicalReason, POLICY_LIMITS.technicalReason);
    const lock = this.db.kind !== 'sqlite';
    return this.db.tx(async (m) => {
      let qb = m.createQueryBuilder(PolicyVersionEntity, 'v').orderBy('v.id', 'DESC').limit(1);
      // On MySQL/PostgreSQL a concurrent writer waits here; SQLite's BEGIN IMMEDIATE already serialises.
      if (lock) qb = qb.setLock('pessimistic_write');
      const latest = await qb.getOne();
      if ((latest ? Number(latest.id) : null) !== afterId) return null;
      const r = await m.insert(PolicyVersionEntity, { textHash, document: version.document, announcedAt, effectiveAt, technicalReason });
      const id = Number(r.identifiers[0]?.id);
      if (!Number.isSafeInteger(id) || id <= 0) throw new Error('policy version insert returned no id');
      return { id, ...version };
    });
  }
}
