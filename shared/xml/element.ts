/** A parsed or built XML element. Attribute values and text are stored unescaped. */
export type Node = Element | string;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const TEXT_SPECIALS = /[&<>]/g;
const ATTR_SPECIALS = /[&<>"']/g;

export function escapeText(s: string): string {
  return TEXT_SPECIALS.test(s) ? s.replace(TEXT_SPECIALS, (c) => ESCAPES[c]!) : s;
}
export function escapeAttr(s: string): string {
  return ATTR_SPECIALS.test(s) ? s.replace(ATTR_SPECIALS, (c) => ESCAPES[c]!) : s;
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

  /** Deep copy, detached from any parent; the namespace in effect is made explicit on the copy's root. */
  clone(): Element {
    const copy = cloneInner(this);
    if (copy.attrs.xmlns === undefined && this.parent) {
      const ns = this.xmlns;
      if (ns !== undefined) copy.attrs.xmlns = ns;
    }
    return copy;
  }

  toString(): string {
    return serialize(this);
  }
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
