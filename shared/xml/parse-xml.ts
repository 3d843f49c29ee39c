import { XmlStreamParser } from './stream-parser.js';
import type { Element } from './element.js';

/**
 * Parses XML text this server stored itself (a serialised Element) back into an Element; null if
 * it is not a single well-formed element. Without an xmlns of its own, the element gets `defaultNamespace`.
 */
export function parseXmlText(xml: string, defaultNamespace?: string): Element | null {
  let root: Element | null = null;
  let failed = false;
  const parser = new XmlStreamParser(
    {
      streamOpen: () => {},
      stanza: (el) => {
        if (root) failed = true;
        root = el;
      },
      streamClose: () => {},
      error: () => {
        failed = true;
      },
    },
    { maxStanzaBytes: Number.MAX_SAFE_INTEGER, maxDepth: 1024, maxAttributes: 1024 },
  );
  parser.write(Buffer.from(defaultNamespace ? `<r xmlns='${defaultNamespace}'>${xml}</r>` : `<r>${xml}</r>`, 'utf8'));
  if (failed || !root) return null;
  (root as Element).parent = null;
  return root;
}

/**
 * Parses several elements this server serialised itself, written one after the other in `bytes`
 * (UTF-8), with one parser: what a cluster node receives many of at once. Null if any of them is not
 * well-formed (the caller then parses them one by one). Each gets `defaultNamespace` unless it has
 * an xmlns of its own.
 */
export function parseXmlElements(bytes: Buffer, defaultNamespace: string): Element[] | null {
  const out: Element[] = [];
  let failed = false;
  const parser = new XmlStreamParser(
    {
      streamOpen: () => {},
      stanza: (el) => {
        el.parent = null;
        out.push(el);
      },
      streamClose: () => {},
      error: () => {
        failed = true;
      },
    },
    { maxStanzaBytes: Number.MAX_SAFE_INTEGER, maxDepth: 1024, maxAttributes: 1024 },
  );
  parser.write(Buffer.from(`<r xmlns='${defaultNamespace}'>`, 'utf8'));
  parser.write(bytes);
  // Only what is complete counts: a last element cut short is not emitted, and makes the count differ.
  return failed || !parser.betweenStanzas ? null : out;
}
