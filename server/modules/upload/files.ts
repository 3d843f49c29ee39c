/**
 * The uploaded files on disk: `<dataDir>/uploads/<id>` (0600, directory 0700), written first to
 * `<dataDir>/uploads/tmp/` and renamed into place only after the last byte is on disk (fsync), so
 * a reader never sees a partial file; a failed upload's temporary file is removed at once. Ids are
 * checked against ID_PATTERN before they become paths, so no request names a path of its own.
 */
import { createWriteStream, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** A file id: 24 characters of base64url (144 random bits). */
export const ID_PATTERN = /^[A-Za-z0-9_-]{24}$/;

export function newId(): string {
  return randomBytes(18).toString('base64url');
}

export class TooLongError extends Error {
  constructor() {
    super('more bytes than the slot allows');
  }
}

export class FileStore {
  readonly dir: string;
  private readonly tmp: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'uploads');
    this.tmp = join(this.dir, 'tmp');
  }

  async init(): Promise<void> {
    await fs.mkdir(this.tmp, { recursive: true, mode: 0o700 });
    await fs.chmod(this.dir, 0o700);
    await fs.chmod(this.tmp, 0o700);
  }

  path(id: string): string {
    if (!ID_PATTERN.test(id)) throw new Error('not a file id');
    return join(this.dir, id);
  }

  /**
   * Streams `body` to the file `id`, exactly `size` bytes; more or fewer is an error and leaves
   * nothing behind. Resolves once the file is complete, synced and in place.
   */
  async write(id: string, body: Readable, size: number): Promise<void> {
    const final = this.path(id);
    const tmp = join(this.tmp, `${id}.${randomBytes(6).toString('hex')}`);
    let seen = 0;
    const count = new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > size) done(new TooLongError());
        else done(null, chunk);
      },
    });
    const out = createWriteStream(tmp, { flags: 'wx', mode: 0o600 });
    try {
      await pipeline(body, count, out);
      if (seen !== size) throw new Error(`the body ended after ${seen} of ${size} bytes`);
      const fh = await fs.open(tmp, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, final);
      await syncDir(this.dir);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }

  async remove(id: string): Promise<void> {
    if (!ID_PATTERN.test(id)) return;
    await fs.rm(join(this.dir, id), { force: true });
  }

  /** Ids of the complete files on disk and temporary files older than `before` (for the sweep). */
  async listOld(before: Date): Promise<{ ids: string[]; staleTmp: string[] }> {
    const ids: string[] = [];
    const staleTmp: string[] = [];
    const entries = await fs.readdir(this.dir).catch(() => [] as string[]);
    for (const name of entries) {
      if (!ID_PATTERN.test(name)) continue;
      const st = await fs.stat(join(this.dir, name)).catch(() => null);
      if (st?.isFile() && st.mtimeMs < before.getTime()) ids.push(name);
    }
    for (const name of await fs.readdir(this.tmp).catch(() => [] as string[])) {
      const st = await fs.stat(join(this.tmp, name)).catch(() => null);
      if (st && st.mtimeMs < before.getTime()) staleTmp.push(name);
    }
    return { ids, staleTmp };
  }

  async removeTmp(name: string): Promise<void> {
    if (!/^[A-Za-z0-9_-]{24}\.[0-9a-f]{12}$/.test(name)) return;
    await fs.rm(join(this.tmp, name), { force: true });
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r').catch(() => null);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    await fh.close();
  }
}
