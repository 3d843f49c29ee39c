/** A parsed or built XML element. Attribute values and text are stored unescaped. */
export type Node = Element | string;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const REPLACEMENT = '\ufffd';

/*
 * Characters XML 1.0 cannot carry (section 2.2): C0 controls other than tab, LF and CR; U+FFFE and
 * U+FFFF; surrogates that are not part of a pair. A peer's parser answers them with not-well-formed
 * and closes the stream (for a transport: every user's bridge), and any network can send them, so
 * the serialiser writes each such UTF-16 unit as U+FFFD, whoever built the element. Replacing
 * rather than dropping keeps lengths (offsets into a body) and shows the reader that something
 * was there; it is also what UTF-8 encoding does to a lone surrogate anyway.
 *
 * Hot path: one test of a character class per string. Only on a hit (markup to escape, a
 * forbidden character, or any surrogate: emoji are surrogate pairs) is more work done.
 */
const TEXT_CANDIDATES = /[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]/;
const ATTR_CANDIDATES = /[&<>"'\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]/;
const NON_XML_CANDIDATES = /[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]/;
const TEXT_SURE = /[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/;
const ATTR_SURE = /[&<>"'\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/;
const NON_XML_SURE = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/;
// The same sets, surrogates counted only when not part of a pair.
const TEXT_REPLACE = /[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const ATTR_REPLACE = /[&<>"'\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const NON_XML_REPLACE = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const toEscapeOrReplacement = (c: string): string => ESCAPES[c] ?? REPLACEMENT;

/** Whether a string holding surrogates has only whole pairs (String.prototype.isWellFormed, Node 20). */
const wellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

function clean(s: string, candidates: RegExp, sure: RegExp, replace: RegExp): string {
  if (!candidates.test(s)) return s;
  // Surrogates only, all in pairs (emoji and other astral characters): nothing to do.
  if (!sure.test(s) && wellFormed(s)) return s;
  return s.replace(replace, toEscapeOrReplacement);
}

export function escapeText(s: string): string {
  return clean(s, TEXT_CANDIDATES, TEXT_SURE, TEXT_REPLACE);
}
export function escapeAttr(s: string): string {
  return clean(s, ATTR_CANDIDATES, ATTR_SURE, ATTR_REPLACE);
}

/** The string with every character XML 1.0 forbids replaced by U+FFFD (what the serialiser sends), unescaped. */
export function replaceNonXmlChars(s: string): string {
  return clean(s, NON_XML_CANDIDATES, NON_XML_SURE, NON_XML_REPLACE);
}

export class Element {
  name: string;
  attrs: Record<string, string>;
  children: Node[];
  parent: Element | null = null;

  constructor(name: string, attrs: Record<string, string | number | undefined | null> = {}, children: Node[] = []) {
    this.name = name;
    this.attrs = {};
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) this.attrs[k] = String(v);
    this.children = [];
    for (const c of children) this.append(c);
  }

  /** The element's namespace: its own xmlns, else the nearest ancestor's. */
  get xmlns(): string | undefined {
    let el: Element | null = this;
    while (el) {
      const ns = el.attrs.xmlns;
      if (ns !== undefined) return ns;
      el = el.parent;
    }
    return undefined;
  }

  attr(name: string): string | undefined {
    return this.attrs[name];
  }

  is(name: string, xmlns?: string): boolean {
    return this.name === name && (xmlns === undefined || this.xmlns === xmlns);
  }

  append(child: Node): this {
    if (typeof child !== 'string') child.parent = this;
    this.children.push(child);
    return this;
  }

  /** Builder: append a child element and return it. */
  c(name: string, attrs: Record<string, string | number | undefined | null> = {}): Element {
    const el = new Element(name, attrs);
    this.append(el);
    return el;
  }

  /** Builder: append text, return this. */
  t(text: string): this {
    this.children.push(text);
    return this;
  }

  /** Builder: the parent (for chained building), or this at the root. */
  up(): Element {
    return this.parent ?? this;
  }

  root(): Element {
    let el: Element = this;
    while (el.parent) el = el.parent;
    return el;
  }

  get elements(): Element[] {
    const out: Element[] = [];
    for (const c of this.children) if (typeof c !== 'string') out.push(c);
    return out;
  }

  getChild(name: string, xmlns?: string): Element | undefined {
    for (const c of this.children) if (typeof c !== 'string' && c.name === name && (xmlns === undefined || c.xmlns === xmlns)) return c;
    return undefined;
  }

  getChildren(name: string, xmlns?: string): Element[] {
    const out: Element[] = [];
    for (const c of this.children) if (typeof c !== 'string' && c.name === name && (xmlns === undefined || c.xmlns === xmlns)) out.push(c);
    return out;
  }

  /** First child element in the given namespace, whatever its name. */
  getChildByNs(xmlns: string): Element | undefined {
    for (const c of this.children) if (typeof c !== 'string' && c.xmlns === xmlns) return c;
    return undefined;
  }

  firstElement(): Element | undefined {
    for (const c of this.children) if (typeof c !== 'string') return c;
    return undefined;
  }

  text(): string {
    let s = '';
    for (const c of this.children) if (typeof c === 'string') s += c;
    return s;
  }

  getChildText(name: string, xmlns?: string): string | undefined {
    return this.getChild(name, xmlns)?.text();
  }

  remove(child: Element): this {
    const i = this.children.indexOf(child);
    if (i >= 0) this.children.splice(i, 1);
    child.parent = null;
    return this;
  }

  /**
   * Deep copy, detached from any parent; the namespace in effect is made explicit on the copy's
   * root, and so is each prefix the copy uses that an ancestor declared (else the copy, stored or
   * sent on its own, would not be namespace-well-formed).
   */
  clone(): Element {
    const copy = cloneInner(this);
    if (!this.parent) return copy;
    if (copy.attrs.xmlns === undefined) {
      const ns = this.xmlns;
      if (ns !== undefined) copy.attrs.xmlns = ns;
    }
    for (const prefix of usedPrefixes(copy)) {
      const key = `xmlns:${prefix}`;
      if (copy.attrs[key] !== undefined) continue;
      for (let el: Element | null = this.parent; el; el = el.parent) {
        const uri = el.attrs[key];
        if (uri !== undefined) {
          copy.attrs[key] = uri;
          break;
        }
      }
    }
    return copy;
  }

  toString(): string {
    return serialize(this);
  }
}

/** The namespace prefixes element and attribute names use in the tree (not xml, always bound). */
function usedPrefixes(root: Element): Set<string> {
  const used = new Set<string>();
  const note = (name: string) => {
    const colon = name.indexOf(':');
    if (colon > 0) used.add(name.slice(0, colon));
  };
  const stack = [root];
  for (let el = stack.pop(); el; el = stack.pop()) {
    note(el.name);
    for (const k in el.attrs) if (!k.startsWith('xmlns')) note(k);
    for (const c of el.children) if (typeof c !== 'string') stack.push(c);
  }
  used.delete('xml');
  return used;
}

function cloneInner(el: Element): Element {
  const copy = new Element(el.name);
  copy.attrs = { ...el.attrs };
  for (const c of el.children) copy.append(typeof c === 'string' ? c : cloneInner(c));
  return copy;
}

export function serialize(el: Element): string {
  const parts: string[] = [];
  write(el, parts);
  return parts.join('');
}

function write(el: Element, out: string[]): void {
  out.push('<', el.name);
  for (const k in el.attrs) out.push(' ', k, '="', escapeAttr(el.attrs[k]!), '"');
  if (el.children.length === 0) {
    out.push('/>');
    return;
  }
  out.push('>');
  for (const c of el.children) {
    if (typeof c === 'string') out.push(escapeText(c));
    else write(c, out);
  }
  out.push('</', el.name, '>');
}

/** Shorthand builder: x('message', {to}, x('body', {}, 'hi')). */
export function x(name: string, attrs: Record<string, string | number | undefined | null> = {}, ...children: (Node | Node[] | undefined | null | false)[]): Element {
  const el = new Element(name, attrs);
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) for (const n of c) el.append(n);
    else el.append(c);
  }
  return el;
}
