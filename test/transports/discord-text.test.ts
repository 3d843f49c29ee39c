/**
 * The Discord adapter's text cleaning: what a Discord nick or message may contain that XMPP cannot
 * carry is removed before it reaches the kit, so the nick the XMPP user sees is the one the adapter
 * matches private messages and kicks against.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanNick, sanitize } from '../../transports/discord/text.js';

test('a Discord nick with U+FFFE, U+FFFF, U+0001 or a lone surrogate is cleaned to the nick XMPP users see', () => {
  assert.equal(cleanNick('al\ufffeice\uffff'), 'alice');
  assert.equal(cleanNick('b\u0001ob\ud800'), 'bob');
  assert.equal(cleanNick('emoji \u{1F600}'), 'emoji \u{1F600}');
});

test('message text keeps tabs, newlines and paired surrogates but loses non-characters', () => {
  assert.equal(sanitize('a\tb\r\nc\ufffe\u{1F600}'), 'a\tb\nc\u{1F600}');
});
