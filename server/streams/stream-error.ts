import { NS } from '../../shared/ns.js';
import { escapeText } from '../../shared/xml/element.js';

/** RFC 6120 4.9.3 stream error conditions used by the server. */
export type StreamErrorCondition =
  | 'bad-format'
  | 'conflict'
  | 'connection-timeout'
  | 'host-unknown'
  | 'internal-server-error'
  | 'invalid-from'
  | 'invalid-namespace'
  | 'not-authorized'
  | 'not-well-formed'
  | 'policy-violation'
  | 'resource-constraint'
  | 'restricted-xml'
  | 'system-shutdown'
  | 'undefined-condition'
  | 'unsupported-stanza-type'
  | 'unsupported-version';

export function streamErrorXml(condition: string, text?: string): string {
  const textXml = text ? `<text xmlns='${NS.streams}' xml:lang='en'>${escapeText(text)}</text>` : '';
  return `<stream:error><${condition} xmlns='${NS.streams}'/>${textXml}</stream:error>`;
}
