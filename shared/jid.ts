/**
 * JIDs per RFC 7622. Localpart and domain are case-folded and NFKC-normalised (P1), which covers
 * the PRECIS IdentifierClass/UsernameCaseMapped profile for the characters real accounts use;
 * the resourcepart keeps its case (OpaqueString) and is only NFC-normalised.
 */
export class JidError extends Error {}

const LOCAL_FORBIDDEN = /[\s"&'/:<>@\u0000-\u001f\u007f]/u;
const MAX_PART_BYTES = 1023;

export class Jid {
  readonly local: string;
  readonly domain: string;
  readonly resource: string;
  readonly bare: string;
  readonly full: string;

  private constructor(local: string, domain: string, resource: string) {
    this.local = local;
    this.domain = domain;
    this.resource = resource;
    this.bare = local ? `${local}@${domain}` : domain;
    this.full = resource ? `${this.bare}/${resource}` : this.bare;
  }

  static parse(input: string): Jid {
    const jid = Jid.tryParse(input);
    if (!jid) throw new JidError(`invalid JID`);
    return jid;
  }

  static tryParse(input: string | undefined | null): Jid | null {
    if (!input) return null;
    let rest = input;
    let resource = '';
    const slash = rest.indexOf('/');
    if (slash >= 0) {
      resource = rest.slice(slash + 1);
      rest = rest.slice(0, slash);
      if (!resource) return null;
    }
    let local = '';
    const at = rest.indexOf('@');
    if (at >= 0) {
      local = rest.slice(0, at);
      rest = rest.slice(at + 1);
      if (!local) return null;
    }
    return Jid.of(local, rest, resource);
  }

  static of(local: string, domain: string, resource = ''): Jid | null {
    const l = local ? normaliseLocal(local) : '';
    const d = normaliseDomain(domain);
    const r = resource ? normaliseResource(resource) : '';
    if (l === null || d === null || r === null) return null;
    return new Jid(l, d, r);
  }

  get isBare(): boolean {
    return this.resource === '';
  }

  get isDomain(): boolean {
    return this.local === '' && this.resource === '';
  }

  toBare(): Jid {
    return this.resource ? new Jid(this.local, this.domain, '') : this;
  }

  withResource(resource: string): Jid {
    const r = normaliseResource(resource);
    if (r === null) throw new JidError('invalid resource');
    return new Jid(this.local, this.domain, r);
  }

  equals(other: Jid | null | undefined): boolean {
    return !!other && other.full === this.full;
  }

  toString(): string {
    return this.full;
  }
}

function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

export function normaliseLocal(s: string): string | null {
  const v = s.normalize('NFKC').toLowerCase();
  if (!v || byteLength(v) > MAX_PART_BYTES || LOCAL_FORBIDDEN.test(v)) return null;
  return v;
}

export function normaliseDomain(s: string): string | null {
  let v = s.normalize('NFKC').toLowerCase();
  if (v.endsWith('.')) v = v.slice(0, -1);
  if (!v || byteLength(v) > MAX_PART_BYTES) return null;
  if (v.startsWith('[')) return /^\[[0-9a-f:.]+\]$/.test(v) ? v : null;
  for (const label of v.split('.')) {
    if (!label || label.length > 63) return null;
    if (/[\s/@:<>"&'\\\u0000-\u001f\u007f]/u.test(label)) return null;
  }
  return v;
}

export function normaliseResource(s: string): string | null {
  const v = s.normalize('NFC');
  if (!v || byteLength(v) > MAX_PART_BYTES || /[\u0000-\u001f\u007f]/.test(v)) return null;
  return v;
}
