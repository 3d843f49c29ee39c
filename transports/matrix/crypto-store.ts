/**
 * The Rust crypto's IndexedDB store, kept in memory (fake-indexeddb, one IDBFactory per session so
 * that sessions never share a database) and turned into bytes and back, so that the kit can keep
 * it sealed with the vault's key (LoginRequest.secretState, the 'secretState' event).
 *
 * A snapshot is every database of the factory with its schema (version, object stores, key paths,
 * indexes) and records, read in one read-only transaction per database (a consistent view: the
 * crypto's own writes are read-write transactions over the same stores), serialised with the
 * structured-clone format of node:v8 (keys and values are what IndexedDB holds: objects, arrays,
 * strings, numbers, typed arrays) and compressed. The header names the user and device it
 * belongs to: a store of another device is never opened (the Rust crypto refuses it anyway).
 */
import { IDBFactory, IDBKeyRange } from 'fake-indexeddb';
import { deserialize, serialize } from 'node:v8';
import { deflateRawSync, inflateRawSync } from 'node:zlib';

interface IndexSchema {
  name: string;
  keyPath: string | string[];
  unique: boolean;
  multiEntry: boolean;
}

interface StoreSnapshot {
  name: string;
  keyPath: string | string[] | null;
  autoIncrement: boolean;
  indexes: IndexSchema[];
  records: [IDBValidKey, unknown][];
}

interface DatabaseSnapshot {
  name: string;
  version: number;
  stores: StoreSnapshot[];
}

interface Snapshot {
  v: 1;
  userId: string;
  deviceId: string;
  databases: DatabaseSnapshot[];
}

const MAGIC = Buffer.from('GHMXCS1\n', 'latin1');

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

/** A fresh, empty in-memory IndexedDB for one session. */
export function newFactory(): IDBFactory {
  // The Rust crypto builds key ranges through the global IDBKeyRange (fake-indexeddb's works for any factory).
  const g = globalThis as { IDBKeyRange?: unknown };
  g.IDBKeyRange ??= IDBKeyRange;
  return new IDBFactory();
}

/**
 * Runs `fn` with `factory` as the global indexedDB (where the Rust crypto looks when it opens its
 * store), one session at a time: opening is the only moment the global is read.
 */
let chain: Promise<unknown> = Promise.resolve();
export function withIndexedDB<T>(factory: IDBFactory, fn: () => Promise<T>): Promise<T> {
  const run = chain.then(async () => {
    const g = globalThis as { indexedDB?: unknown };
    const before = g.indexedDB;
    g.indexedDB = factory;
    try {
      return await fn();
    } finally {
      if (before === undefined) delete g.indexedDB;
      else g.indexedDB = before;
    }
  });
  chain = run.catch(() => undefined);
  return run;
}

/** Reads every database of the factory into bytes. */
export async function snapshot(factory: IDBFactory, owner: { userId: string; deviceId: string }): Promise<Buffer> {
  const databases: DatabaseSnapshot[] = [];
  for (const info of await factory.databases()) {
    if (!info.name) continue;
    const db = await request(factory.open(info.name));
    try {
      const names = [...db.objectStoreNames];
      const stores: StoreSnapshot[] = [];
      if (names.length) {
        const tx = db.transaction(names, 'readonly');
        const finished = done(tx);
        for (const name of names) {
          const store = tx.objectStore(name);
          const indexes = [...store.indexNames].map((n) => {
            const index = store.index(n);
            return { name: n, keyPath: index.keyPath, unique: index.unique, multiEntry: index.multiEntry };
          });
          const records: [IDBValidKey, unknown][] = [];
          stores.push({ name, keyPath: store.keyPath, autoIncrement: store.autoIncrement, indexes, records });
          const cursorReq = store.openCursor();
          cursorReq.onsuccess = () => {
            const cursor = cursorReq.result;
            if (!cursor) return;
            records.push([cursor.primaryKey, cursor.value]);
            cursor.continue();
          };
        }
        await finished;
      }
      databases.push({ name: info.name, version: db.version, stores });
    } finally {
      db.close();
    }
  }
  const body: Snapshot = { v: 1, userId: owner.userId, deviceId: owner.deviceId, databases };
  return Buffer.concat([MAGIC, deflateRawSync(serialize(body))]);
}

/** The owner a snapshot names, or null when the bytes are not a snapshot. */
function parse(data: Uint8Array): Snapshot | null {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < MAGIC.length || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  try {
    const body = deserialize(inflateRawSync(buf.subarray(MAGIC.length))) as Snapshot;
    return body && body.v === 1 && Array.isArray(body.databases) ? body : null;
  } catch {
    return null;
  }
}

/**
 * Writes a snapshot into an empty factory. Resolves 'restored', or why not: the bytes are no
 * snapshot ('unreadable') or belong to another user or device ('other-device').
 */
export async function restore(factory: IDBFactory, data: Uint8Array, owner: { userId: string; deviceId: string }): Promise<'restored' | 'unreadable' | 'other-device'> {
  const snap = parse(data);
  if (!snap) return 'unreadable';
  if (snap.userId !== owner.userId || snap.deviceId !== owner.deviceId) return 'other-device';
  for (const d of snap.databases) {
    const open = factory.open(d.name, d.version);
    open.onupgradeneeded = () => {
      const db = open.result;
      for (const s of d.stores) {
        const store = db.createObjectStore(s.name, { keyPath: s.keyPath, autoIncrement: s.autoIncrement });
        for (const i of s.indexes) store.createIndex(i.name, i.keyPath, { unique: i.unique, multiEntry: i.multiEntry });
      }
    };
    const db = await request(open);
    try {
      if (d.stores.length) {
        const tx = db.transaction(d.stores.map((s) => s.name), 'readwrite');
        const finished = done(tx);
        for (const s of d.stores) {
          const store = tx.objectStore(s.name);
          for (const [key, value] of s.records) {
            if (s.keyPath === null) store.put(value, key);
            else store.put(value);
          }
        }
        await finished;
      }
    } finally {
      db.close();
    }
  }
  return 'restored';
}

/**
 * Calls `onWrite` after every read-write transaction that completes on a database opened through
 * this factory from now on (how a session learns that the store changed).
 */
export function watchWrites(factory: IDBFactory, onWrite: () => void): void {
  const open = factory.open.bind(factory);
  factory.open = (name: string, version?: number) => {
    const req = version === undefined ? open(name) : open(name, version);
    req.addEventListener('success', () => {
      const db = req.result;
      const transaction = db.transaction.bind(db);
      db.transaction = ((stores: string | string[], mode?: IDBTransactionMode, options?: IDBTransactionOptions) => {
        const tx = transaction(stores, mode, options);
        if (mode === 'readwrite') tx.addEventListener('complete', onWrite);
        return tx;
      }) as typeof db.transaction;
    });
    return req;
  };
}
