/** The HTTPS service's route table and request parsing (server/http/routes.ts), without sockets. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpRoutes, hostName } from '../../server/http/routes.js';
import { Logger } from '../../shared/logger.js';
import type { HttpRoute } from '../../server/core/http-service.js';

const route = (path: string): HttpRoute => ({ path, methods: ['GET'], handle: () => {} });

test('routes: exact paths, the longest prefix ending in /, a path taken twice is refused, removal frees it', () => {
  const routes = new HttpRoutes(new Logger({ level: 'error', format: 'text', sink: () => {} }), () => null);
  const ws = route('/xmpp-websocket');
  const upload = route('/upload/');
  const uploadThumbs = route('/upload/thumbs/');
  routes.route(ws);
  const removeUpload = routes.route(upload);
  routes.route(uploadThumbs);
  assert.equal(routes.find('/xmpp-websocket'), ws);
  assert.equal(routes.find('/xmpp-websocket/'), null, 'an exact path is no prefix');
  assert.equal(routes.find('/upload/abc/file.png'), upload);
  assert.equal(routes.find('/upload/thumbs/abc'), uploadThumbs);
  assert.equal(routes.find('/upload'), null);
  assert.equal(routes.find('/'), null);
  assert.throws(() => routes.route(route('/upload/')), /served twice/);
  assert.throws(() => routes.route(route('upload/')), /must start with/);
  removeUpload();
  assert.equal(routes.find('/upload/abc'), null);
  routes.route(route('/upload/'));
});

test('Host header: name lower-cased without the port, IPv6 literals kept, junk refused', () => {
  assert.equal(hostName('Example.ORG:5443'), 'example.org');
  assert.equal(hostName('localhost'), 'localhost');
  assert.equal(hostName('[::1]:5443'), '[::1]');
  assert.equal(hostName(''), '');
  assert.equal(hostName('evil.example/x'), null);
  assert.equal(hostName('a b'), null);
  assert.equal(hostName('host:port'), null);
});
