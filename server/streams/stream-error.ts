import { NS } from '../../shared/ns.js';
import { escapeText } from '../../shared/xml/element.js';

export function streamErrorXml(condition: string, text?: string): string {
  const textXml = text ? `<text xmlns='${NS.streams}' xml:lang='en'>${escapeText(text)}</text>` : '';
  return `<stream:error><${condition} xmlns='${NS.streams}'/>${textXml}</stream:error>`;
}
