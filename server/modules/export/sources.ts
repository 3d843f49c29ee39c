/**
 * Reading an export as other servers write it, for `gatehouse import`: the result is one
 * XEP-0227 <server-data/> document for parseExport (export.ts).
 *
 * - one file: a <server-data/> document (Gatehouse's `user export`), possibly pulling in other
 *   files with XInclude: ejabberd's `export_piefxis DIR` writes a main file whose <server-data/>
 *   holds one <xi:include href='…_host.xml'/> per host, each of those a <host/> document;
 * - a directory: every *.xml file in it (not in subdirectories). Prosody's prosody-migrator
 *   writes one <server-data/> file per account (user@host.xml), ejabberd a main file beside its
 *   host files; a file that another one includes is read only there.
 *
 * Of XInclude 1.0 only what exports use is supported: <xi:include href='…'/> with parse='xml' (the
 * default), href a relative file name. Anything else (a URL, an xpointer, parse='text') is refused
 * rather than ignored, so an import never silently misses accounts. Every file read, directly or
 * included, must lie inside the export's directory (the directory given, or the one holding the
 * file given), also after following symbolic links, and the files together may not exceed
 * MAX_IMPORT_BYTES.
 */
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Element, x } from '../../../shared/xml/element.js';
import { XmlStreamParser } from '../../../shared/xml/stream-parser.js';
import { ExportError, MAX_IMPORT_BYTES, PIE_NS, PIE_NS_LEGACY } from './export.js';

export const XINCLUDE_NS = 'http://www.w3.org/2001/XInclude';

export interface SourceLimits {
  /** Largest total size of the files read, in bytes. */
  maxBytes: number;
  /** Most files read (a directory with more is refused). */
  maxFiles: number;
  /** Deepest chain of includes. */
  maxIncludeDepth: number;
}

export const DEFAULT_SOURCE_LIMITS: SourceLimits = { maxBytes: MAX_IMPORT_BYTES, maxFiles: 100_000, maxIncludeDepth: 8 };

export interface ExportSource {
  /** All hosts of all files, in one <server-data xmlns='urn:xmpp:pie:0'/>. */
  document: Element;
  /** The files read, relative to the export directory, in the order read. */
  files: string[];
  /** Their total size in bytes. */
  bytes: number;
}

interface Reader {
  /** The export directory, symbolic links resolved. */
  root: string;
  limits: SourceLimits;
  bytes: number;
  files: string[];
  /** Parsed documents by real path (a directory's files are parsed once). */
  parsed: Map<string, Element>;
  /** Real paths of the files some other file included. */
  included: Set<string>;
  /** Size of each file read, to charge a file included more than once for every copy. */
  sizes: Map<string, number>;
}

const display = (r: Reader, real: string): string => path.relative(r.root, real) || path.basename(real);

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Parses one whole XML document into an element (the stream parser's rules: no DTD, comments or PIs). */
function parseDocument(buf: Buffer, name: string): Element {
  let root: Element | null = null;
  let closed = false;
  let error: string | null = null;
  const parser = new XmlStreamParser(
    {
      streamOpen: (n, attrs) => {
        root = new Element(n, attrs);
      },
      stanza: (el) => {
        (root as Element | null)?.append(el);
      },
      streamClose: () => {
        closed = true;
      },
      error: (_condition, message) => {
        error ??= message;
      },
    },
    { maxStanzaBytes: Math.max(buf.length, 1), maxDepth: 512, maxAttributes: 512 },
  );
  parser.write(buf);
  if (error) throw new ExportError(`${name}: not a readable XML file: ${error}`);
  const r = root as Element | null;
  if (!r) throw new ExportError(`${name}: the file holds no XML document`);
  if (!closed) throw new ExportError(`${name}: the file is truncated: </${r.name}> is missing`);
  return r;
}

/** Reads and parses a file inside the export directory, counting it against the limits. */
async function load(r: Reader, real: string): Promise<Element> {
  const cached = r.parsed.get(real);
  if (cached) return cached;
  const name = display(r, real);
  const info = await stat(real);
  if (!info.isFile()) throw new ExportError(`${name} is not a regular file`);
  if (r.files.length >= r.limits.maxFiles) throw new ExportError(`the export has more than ${r.limits.maxFiles} files`);
  if (info.size > r.limits.maxBytes) throw new ExportError(`${name} is ${info.size} bytes, more than an import may read (${r.limits.maxBytes} bytes)`);
  if (r.bytes + info.size > r.limits.maxBytes) throw new ExportError(`the export's files are together more than an import may read (${r.limits.maxBytes} bytes; at ${name})`);
  const buf = await readFile(real);
  if (r.bytes + buf.length > r.limits.maxBytes) throw new ExportError(`the export's files are together more than an import may read (${r.limits.maxBytes} bytes; at ${name})`);
  r.bytes += buf.length;
  r.sizes.set(real, buf.length);
  r.files.push(name);
  const doc = parseDocument(buf, name);
  r.parsed.set(real, doc);
  return doc;
}

/** The real path of an include target, checked to be a file inside the export directory. */
async function includeTarget(r: Reader, from: string, el: Element): Promise<string> {
  const where = `${display(r, from)}: <xi:include href='${(el.attrs.href ?? '').slice(0, 200)}'/>`;
  const href = el.attrs.href;
  if (!href) throw new ExportError(`${display(r, from)}: an <xi:include/> without href (only includes of other files are supported)`);
  if ((el.attrs.parse ?? 'xml') !== 'xml') throw new ExportError(`${where}: parse='${el.attrs.parse!.slice(0, 20)}' is not supported (only parse='xml')`);
  if (el.attrs.xpointer !== undefined || href.includes('#')) throw new ExportError(`${where}: XPointer fragments are not supported`);
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(href)) throw new ExportError(`${where}: only relative file names are supported, not URLs`);
  let file = href;
  if (href.includes('%')) {
    try {
      file = decodeURIComponent(href);
    } catch {
      throw new ExportError(`${where}: not a valid URI reference`);
    }
  }
  if (file.includes('\0')) throw new ExportError(`${where}: not a valid file name`);
  const target = path.resolve(path.dirname(from), file);
  if (!inside(r.root, target)) throw new ExportError(`${where}: the file is outside the export directory; includes must stay inside it`);
  let real: string;
  try {
    real = await realpath(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ExportError(`${where}: ${code === 'ENOENT' ? 'no such file in the export directory' : `cannot read it (${code ?? 'error'})`}`);
  }
  if (!inside(r.root, real)) throw new ExportError(`${where}: the file is a link to outside the export directory; includes must stay inside it`);
  return real;
}

/**
 * Replaces the <xi:include/> elements under `el` (in document `file`) with the root elements of
 * the files they name, recursively. `scope` maps the prefixes declared above `el` to namespaces.
 */
async function expand(r: Reader, file: string, el: Element, scope: Map<string, string>, stack: string[]): Promise<void> {
  const own = new Map(scope);
  for (const [k, v] of Object.entries(el.attrs)) if (k.startsWith('xmlns:')) own.set(k.slice(6), v);
  for (let i = 0; i < el.children.length; i++) {
    const child = el.children[i]!;
    if (typeof child === 'string') continue;
    const colon = child.name.indexOf(':');
    let childScope = own;
    if (Object.keys(child.attrs).some((k) => k.startsWith('xmlns:'))) {
      childScope = new Map(own);
      for (const [k, v] of Object.entries(child.attrs)) if (k.startsWith('xmlns:')) childScope.set(k.slice(6), v);
    }
    const ns = colon > 0 ? childScope.get(child.name.slice(0, colon)) : child.xmlns;
    const local = colon > 0 ? child.name.slice(colon + 1) : child.name;
    if (ns !== XINCLUDE_NS) {
      await expand(r, file, child, own, stack);
      continue;
    }
    if (local === 'fallback') continue;
    if (local !== 'include') throw new ExportError(`${display(r, file)}: <${child.name.slice(0, 40)}/> of XInclude is not supported`);
    const real = await includeTarget(r, file, child);
    if (stack.includes(real)) throw new ExportError(`${display(r, file)}: <xi:include href='${child.attrs.href!.slice(0, 200)}'/> includes a file that includes it (a loop)`);
    if (stack.length >= r.limits.maxIncludeDepth) throw new ExportError(`${display(r, file)}: includes nested more than ${r.limits.maxIncludeDepth} deep`);
    if (r.included.has(real)) {
      // Each further copy counts, so that including one file many times cannot bypass the limit.
      const size = r.sizes.get(real) ?? 0;
      if (r.bytes + size > r.limits.maxBytes) throw new ExportError(`the export's files are together more than an import may read (${r.limits.maxBytes} bytes; at ${display(r, real)}, included again)`);
      r.bytes += size;
    }
    r.included.add(real);
    const included = (await load(r, real)).clone();
    await expand(r, real, included, new Map(), [...stack, real]);
    included.parent = el;
    el.children[i] = included;
  }
}

/** The <host/> elements of a top-level document, carrying the namespace declarations of its root. */
function hostsOf(doc: Element): Element[] {
  if (doc.name === 'host') return [doc];
  const decls = Object.entries(doc.attrs).filter(([k]) => k.startsWith('xmlns:'));
  const legacy = doc.attrs.xmlns === PIE_NS_LEGACY;
  return doc.elements.map((el) => {
    for (const [k, v] of decls) if (el.attrs[k] === undefined) el.attrs[k] = v;
    if (legacy && el.attrs.xmlns === undefined) el.attrs.xmlns = PIE_NS_LEGACY;
    return el;
  });
}

function isPieRoot(doc: Element, name: string): boolean {
  return doc.name === name && (doc.attrs.xmlns === PIE_NS || doc.attrs.xmlns === PIE_NS_LEGACY);
}

/** Reads an export: a file (with the files it includes) or a directory of files. */
export async function readExportSource(input: string, limits: Partial<SourceLimits> = {}): Promise<ExportSource> {
  let info;
  try {
    info = await stat(input);
  } catch (err) {
    throw new ExportError(`cannot read ${input}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const realInput = await realpath(input);
  const r: Reader = {
    root: info.isDirectory() ? realInput : path.dirname(realInput),
    limits: { ...DEFAULT_SOURCE_LIMITS, ...limits },
    bytes: 0,
    files: [],
    parsed: new Map(),
    included: new Set(),
    sizes: new Map(),
  };
  let candidates: string[];
  if (info.isDirectory()) {
    const names = (await readdir(realInput)).filter((n) => n.toLowerCase().endsWith('.xml')).sort();
    if (names.length > r.limits.maxFiles) throw new ExportError(`${input} has more than ${r.limits.maxFiles} .xml files`);
    candidates = [];
    for (const n of names) {
      const p = path.join(realInput, n);
      const l = await lstat(p);
      if (l.isDirectory()) continue;
      const real = await realpath(p).catch(() => null);
      if (!real) throw new ExportError(`${n}: a link to a file that does not exist`);
      if (!inside(r.root, real)) throw new ExportError(`${n}: a link to outside the export directory`);
      candidates.push(real);
    }
    if (candidates.length === 0) throw new ExportError(`${input} holds no .xml files (an export is a directory of XEP-0227 files or one such file)`);
  } else {
    candidates = [realInput];
  }

  // Main documents first, so that the files they include are known before the rest is looked at.
  const docs: { real: string; doc: Element }[] = [];
  for (const real of candidates) docs.push({ real, doc: await load(r, real) });
  const top: Element[] = [];
  for (const { real, doc } of docs) {
    if (!isPieRoot(doc, 'server-data')) continue;
    await expand(r, real, doc, new Map(), [real]);
    top.push(doc);
  }
  for (const { real, doc } of docs) {
    if (isPieRoot(doc, 'server-data')) continue;
    if (r.included.has(real)) continue;
    if (isPieRoot(doc, 'host')) {
      await expand(r, real, doc, new Map(), [real]);
      top.push(doc);
      continue;
    }
    throw new ExportError(`${display(r, real)}: not an XEP-0227 file: the root element must be <server-data xmlns='${PIE_NS}'/> (or an included <host/>)`);
  }

  const document = x('server-data', { xmlns: PIE_NS });
  const seen = new Map<string, string>();
  for (const doc of top) {
    const from = r.files.find((f) => r.parsed.get(path.join(r.root, f)) === doc) ?? '';
    for (const host of hostsOf(doc)) {
      const jid = (host.attrs.jid ?? '').toLowerCase();
      if (host.name === 'host') {
        for (const u of host.getChildren('user')) {
          const key = `${(u.attrs.name ?? '').toLowerCase()}@${jid}`;
          const before = seen.get(key);
          if (before !== undefined) throw new ExportError(`${key} is in the export twice (${before === from ? from : `${before} and ${from}`}): import one export at a time`);
          seen.set(key, from);
        }
      }
      document.append(host);
    }
  }
  return { document, files: r.files, bytes: r.bytes };
}
