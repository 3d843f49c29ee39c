/**
 * Storage for session records (P6) and anonymous statistics (P12).
 *
 * - `session_records`: one row per ended client session: who (full and bare JID), from where (IP),
 *   when (start, end), how much (stanzas and bytes in/out). It names a JID and an IP, so it carries a
 *   timestamp (`ended_at`) and belongs to the retention class "detailed logs" (P13): rows are deleted
 *   once `ended_at` is older than `retention.detailedLogs` (deleteSessionRecordsBefore).
 * - `stat_points`: anonymous time series, RRD-like: (series, resolution, bucket_start, value) and
 *   nothing else. There is deliberately no column that could hold a JID, an IP or content; series
 *   names are checked by the statistics module (server/modules/statistics/statistics.ts) so none smuggles one in.
 */
import { EntitySchema, In, type ValueTransformer } from 'typeorm';
import { bigintNumber, Db, ID_CHUNK, checkText, millis } from '../db.js';
import type { Resolution, SessionRecord, StatPoint, StatWrite, ListPointsOptions, StatisticsRepository } from '../types.js';

/** DOUBLE PRECISION: pg and mysql2 return numbers, but be tolerant of strings. */
const doubleNumber: ValueTransformer = {
  to: (v: number | null | undefined) => v,
  from: (v: string | number | null | undefined) => (v === null || v === undefined ? v : Number(v)),
};

export const RESOLUTIONS: readonly Resolution[] = ['minute', 'hour', 'day'];
export const RESOLUTION_MS: Record<Resolution, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** Column limits, enforced here so every database rejects the same values. */
export const STATISTICS_LIMITS = { series: 191, ip: 64, closeReason: 64 } as const;

// ---- session records (P6) ----

export interface SessionRecordRow {
  id: number;
  jid: string;
  account: string;
  ip: string;
  secure: boolean;
  startedAt: number;
  endedAt: number;
  stanzasIn: number;
  stanzasOut: number;
  bytesIn: number;
  bytesOut: number;
  closeReason: string | null;
}

export const SessionRecordEntity = new EntitySchema<SessionRecordRow>({
  name: 'SessionRecord',
  tableName: 'session_records',
  columns: {
    id: { type: 'bigint', primary: true, generated: 'increment', transformer: bigintNumber },
    jid: { type: 'text' },
    account: { type: 'text' },
    ip: { type: 'varchar', length: STATISTICS_LIMITS.ip },
    secure: { type: 'boolean' },
    startedAt: { name: 'started_at', type: 'bigint', transformer: bigintNumber },
    endedAt: { name: 'ended_at', type: 'bigint', transformer: bigintNumber },
    stanzasIn: { name: 'stanzas_in', type: 'bigint', transformer: bigintNumber },
    stanzasOut: { name: 'stanzas_out', type: 'bigint', transformer: bigintNumber },
    bytesIn: { name: 'bytes_in', type: 'bigint', transformer: bigintNumber },
    bytesOut: { name: 'bytes_out', type: 'bigint', transformer: bigintNumber },
    closeReason: { name: 'close_reason', type: 'varchar', length: STATISTICS_LIMITS.closeReason, nullable: true },
  },
});

// ---- anonymous statistics (P12) ----

export interface StatPointRow {
  series: string;
  resolution: string;
  bucketStart: number;
  value: number;
}

export const StatPointEntity = new EntitySchema<StatPointRow>({
  name: 'StatPoint',
  tableName: 'stat_points',
  columns: {
    series: { type: 'varchar', length: STATISTICS_LIMITS.series, primary: true },
    resolution: { type: 'varchar', length: 8, primary: true },
    bucketStart: { name: 'bucket_start', type: 'bigint', primary: true, transformer: bigintNumber },
    value: { type: 'double precision', transformer: doubleNumber },
  },
});

export const statisticsEntities = [SessionRecordEntity, StatPointEntity];

function checkResolution(r: unknown): Resolution {
  if (r !== 'minute' && r !== 'hour' && r !== 'day') throw new TypeError('resolution must be minute, hour or day');
  return r;
}

function count(n: unknown, what: string): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new TypeError(`${what} must be a non-negative integer`);
  return n;
}

function toRecord(r: SessionRecordRow): SessionRecord {
  return {
    jid: r.jid,
    account: r.account,
    ip: r.ip,
    secure: Boolean(r.secure),
    startedAt: new Date(Number(r.startedAt)),
    endedAt: new Date(Number(r.endedAt)),
    stanzasIn: Number(r.stanzasIn),
    stanzasOut: Number(r.stanzasOut),
    bytesIn: Number(r.bytesIn),
    bytesOut: Number(r.bytesOut),
    closeReason: r.closeReason ?? null,
  };
}

function key(series: string, resolution: string, bucketStart: number): string {
  return `${resolution}\u0000${bucketStart}\u0000${series}`;
}

export class TypeOrmStatisticsRepository implements StatisticsRepository {
  constructor(private readonly db: Db) {}

  async addSessionRecord(record: SessionRecord): Promise<void> {
    if (typeof record.jid !== 'string' || typeof record.account !== 'string') throw new TypeError('jid and account must be strings');
    const row: Omit<SessionRecordRow, 'id'> = {
      jid: record.jid,
      account: record.account,
      ip: checkText('ip', record.ip, STATISTICS_LIMITS.ip),
      secure: Boolean(record.secure),
      startedAt: millis('startedAt', record.startedAt),
      endedAt: millis('endedAt', record.endedAt),
      stanzasIn: count(record.stanzasIn, 'stanzasIn'),
      stanzasOut: count(record.stanzasOut, 'stanzasOut'),
      bytesIn: count(record.bytesIn, 'bytesIn'),
      bytesOut: count(record.bytesOut, 'bytesOut'),
      closeReason: record.closeReason === null ? null : checkText('closeReason', record.closeReason, STATISTICS_LIMITS.closeReason),
    };
    // Statistics (P6): a record lost in a power failure is not worth an fsync per session end.
    await this.db.group((m) => m.insert(SessionRecordEntity, row), 'relaxed');
  }

  async listSessionRecords(opts: { since?: Date; limit?: number } = {}): Promise<SessionRecord[]> {
    const since = opts.since ? millis('since', opts.since) : undefined;
    const limit = opts.limit !== undefined && Number.isSafeInteger(opts.limit) && opts.limit > 0 ? opts.limit : undefined;
    const rows = await this.db.run((m) => {
      let qb = m.createQueryBuilder(SessionRecordEntity, 's').orderBy('s.endedAt', 'ASC').addOrderBy('s.id', 'ASC');
      if (since !== undefined) qb = qb.where('s.endedAt >= :since', { since });
      if (limit !== undefined) qb = qb.limit(limit);
      return qb.getMany();
    });
    return rows.map(toRecord);
  }

  async deleteSessionRecordsBefore(before: Date, limit?: number): Promise<number> {
    const b = millis('before', before);
    if (limit === undefined) {
      const r = await this.db.run((m) => m.createQueryBuilder().delete().from(SessionRecordEntity).where('ended_at < :b', { b }).execute());
      return Number(r.affected ?? 0);
    }
    if (!Number.isSafeInteger(limit) || limit <= 0) return 0;
    // A bounded batch, portable (MySQL cannot DELETE ... IN (SELECT ... LIMIT)): ids first.
    return this.db.tx(async (m) => {
      const rows = await m
        .createQueryBuilder(SessionRecordEntity, 's')
        .select('s.id', 'id')
        .where('s.endedAt < :b', { b })
        .orderBy('s.endedAt', 'ASC')
        .limit(limit)
        .getRawMany<{ id: string | number }>();
      const ids = rows.map((r) => Number(r.id));
      let n = 0;
      for (let i = 0; i < ids.length; i += ID_CHUNK) {
        const r = await m.delete(SessionRecordEntity, { id: In(ids.slice(i, i + ID_CHUNK)) });
        n += Number(r.affected ?? 0);
      }
      return n;
    });
  }

  async countSessionRecordsBefore(before: Date): Promise<number> {
    const b = millis('before', before);
    return this.db.run((m) => m.createQueryBuilder(SessionRecordEntity, 's').where('s.endedAt < :b', { b }).getCount());
  }

  async deleteSessionRecordsOf(account: string): Promise<number> {
    if (typeof account !== 'string') return 0;
    const r = await this.db.run((m) => m.delete(SessionRecordEntity, { account }));
    return Number(r.affected ?? 0);
  }

  async writePoints(points: StatWrite[]): Promise<void> {
    if (points.length === 0) return;
    // Merge duplicates first, so each key is written once.
    const merged = new Map<string, StatPointRow & { mode: 'add' | 'set' }>();
    for (const p of points) {
      const series = checkText('series', p.series, STATISTICS_LIMITS.series);
      const resolution = checkResolution(p.resolution);
      const bucketStart = millis('bucketStart', p.bucketStart);
      if (typeof p.value !== 'number' || !Number.isFinite(p.value)) throw new TypeError('value must be a finite number');
      const k = key(series, resolution, bucketStart);
      const prev = merged.get(k);
      if (prev && p.mode === 'add') prev.value += p.value;
      else merged.set(k, { series, resolution, bucketStart, value: p.value, mode: p.mode });
    }
    const rows = [...merged.values()];
    await this.db.tx(async (m) => {
      const adds = rows.filter((r) => r.mode === 'add');
      // Read what the 'add' points add to, grouped by (resolution, bucket) to keep the queries few.
      const groups = new Map<string, { resolution: string; bucketStart: number; series: string[] }>();
      for (const r of adds) {
        const g = `${r.resolution}\u0000${r.bucketStart}`;
        const entry = groups.get(g) ?? { resolution: r.resolution, bucketStart: r.bucketStart, series: [] };
        entry.series.push(r.series);
        groups.set(g, entry);
      }
      const existing = new Map<string, number>();
      for (const g of groups.values()) {
        for (let i = 0; i < g.series.length; i += ID_CHUNK) {
          const found = await m.find(StatPointEntity, {
            where: { resolution: g.resolution, bucketStart: g.bucketStart, series: In(g.series.slice(i, i + ID_CHUNK)) },
          });
          for (const f of found) existing.set(key(f.series, f.resolution, Number(f.bucketStart)), Number(f.value));
        }
      }
      const out = rows.map((r) => ({
        series: r.series,
        resolution: r.resolution,
        bucketStart: r.bucketStart,
        value: r.mode === 'add' ? r.value + (existing.get(key(r.series, r.resolution, r.bucketStart)) ?? 0) : r.value,
      }));
      for (let i = 0; i < out.length; i += ID_CHUNK) {
        await m.upsert(StatPointEntity, out.slice(i, i + ID_CHUNK), { conflictPaths: ['series', 'resolution', 'bucketStart'] });
      }
    });
  }

  async listPoints(opts: ListPointsOptions): Promise<StatPoint[]> {
    const resolution = checkResolution(opts.resolution);
    const since = opts.since ? millis('since', opts.since) : undefined;
    const until = opts.until ? millis('until', opts.until) : undefined;
    const series = opts.series;
    if (series && series.length === 0) return [];
    const rows = await this.db.run(async (m) => {
      const chunks = series ? Array.from({ length: Math.ceil(series.length / ID_CHUNK) }, (_, i) => series.slice(i * ID_CHUNK, (i + 1) * ID_CHUNK)) : [null];
      const out: StatPointRow[] = [];
      for (const chunk of chunks) {
        let qb = m.createQueryBuilder(StatPointEntity, 'p').where('p.resolution = :resolution', { resolution });
        if (since !== undefined) qb = qb.andWhere('p.bucketStart >= :since', { since });
        if (until !== undefined) qb = qb.andWhere('p.bucketStart < :until', { until });
        if (chunk) qb = qb.andWhere('p.series IN (:...series)', { series: chunk });
        out.push(...(await qb.getMany()));
      }
      return out;
    });
    return rows
      .map((r) => ({ series: r.series, resolution, bucketStart: new Date(Number(r.bucketStart)), value: Number(r.value) }))
      .sort((a, b) => a.bucketStart.getTime() - b.bucketStart.getTime() || (a.series < b.series ? -1 : a.series > b.series ? 1 : 0));
  }

  async seriesNames(resolution?: Resolution): Promise<string[]> {
    const r = resolution === undefined ? undefined : checkResolution(resolution);
    const rows = await this.db.run((m) => {
      let qb = m.createQueryBuilder(StatPointEntity, 'p').select('DISTINCT p.series', 'series');
      if (r) qb = qb.where('p.resolution = :r', { r });
      return qb.getRawMany<{ series: string }>();
    });
    return rows.map((x) => String(x.series)).sort();
  }

  latestBucket(resolution: Resolution): Promise<Date | null> {
    return this.extremeBucket(resolution, 'MAX');
  }

  earliestBucket(resolution: Resolution): Promise<Date | null> {
    return this.extremeBucket(resolution, 'MIN');
  }

  private async extremeBucket(resolution: Resolution, fn: 'MIN' | 'MAX'): Promise<Date | null> {
    const r = checkResolution(resolution);
    const row = await this.db.run((m) =>
      m.createQueryBuilder(StatPointEntity, 'p').select(`${fn}(p.bucketStart)`, 'b').where('p.resolution = :r', { r }).getRawOne<{ b: string | number | null }>(),
    );
    return row?.b === null || row?.b === undefined ? null : new Date(Number(row.b));
  }

  async deletePointsBefore(resolution: Resolution, before: Date): Promise<number> {
    const r = checkResolution(resolution);
    const b = millis('before', before);
    const res = await this.db.run((m) =>
      m.createQueryBuilder().delete().from(StatPointEntity).where('resolution = :r', { r }).andWhere('bucket_start < :b', { b }).execute(),
    );
    return Number(res.affected ?? 0);
  }
}
