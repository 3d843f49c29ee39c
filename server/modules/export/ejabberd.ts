/**
 * What ejabberd's `export_piefxis` writes differently from XEP-0227 (seen with ejabberd 23.01).
 *
 * SCRAM credentials: ejabberd keeps salt, StoredKey and ServerKey base64-encoded and its export
 * encodes them once more, so <stored-key/> holds the base64 of the base64 text of the key. Such a
 * value is recognised by its length: decoded once it is not a key of the mechanism's size, decoded
 * twice it is (for both keys). The salt of those credentials is then decoded twice as well. A
 * correctly encoded file (another server's, or a later ejabberd's) is left as it is.
 *
 * Accounts of hosts with `auth_password_format: plain` come with a 'password' attribute, which the
 * import turns into SCRAM verifiers (export.ts). SCRAM-SHA-512 credentials are not usable by
 * Gatehouse and are skipped with a warning by the import.
 */
import type { Element } from '../../../shared/xml/element.js';
import { PIE_SCRAM_NS } from './export.js';

const KEY_BYTES: Record<string, number> = { 'SCRAM-SHA-1': 20, 'SCRAM-SHA-256': 32, 'SCRAM-SHA-512': 64 };
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decoded(text: string | undefined): Buffer | null {
  const t = (text ?? '').replace(/\s+/g, '');
  if (!t || t.length % 4 !== 0 || !BASE64.test(t)) return null;
  return Buffer.from(t, 'base64');
}

/** The text inside a base64 value when that text is itself base64, else null. */
function innerBase64(text: string | undefined): string | null {
  const once = decoded(text);
  if (!once) return null;
  const inner = once.toString('latin1');
  return decoded(inner) ? inner : null;
}

function setText(el: Element, value: string): void {
  el.children = [value];
}

/**
 * Decodes the doubly encoded SCRAM values ejabberd writes, in place, in every <user/> of the
 * document; returns the number of credentials changed.
 */
export function fixEjabberdScram(document: Element): number {
  let fixed = 0;
  for (const host of document.elements) {
    for (const user of host.getChildren('user')) {
      for (const cred of user.getChildren('scram-credentials', PIE_SCRAM_NS)) {
        const size = KEY_BYTES[cred.attrs.mechanism ?? ''];
        const salt = cred.getChild('salt');
        const server = cred.getChild('server-key');
        const stored = cred.getChild('stored-key');
        if (!size || !salt || !server || !stored) continue;
        if (decoded(server.text())?.length === size && decoded(stored.text())?.length === size) continue;
        const s = innerBase64(salt.text());
        const sk = innerBase64(server.text());
        const st = innerBase64(stored.text());
        if (!s || !sk || !st || decoded(sk)!.length !== size || decoded(st)!.length !== size) continue;
        setText(salt, s);
        setText(server, sk);
        setText(stored, st);
        fixed++;
      }
    }
  }
  return fixed;
}
