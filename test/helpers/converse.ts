/**
 * Converse.js (npm `converse.js`, its dist/ served by a small HTTP server of the test) in headless
 * Chromium, logged in over WebSocket (RFC 7395) to a test server: startConverse() returns a handle
 * to drive it (send a message, wait for one, evaluate in the page, take a screenshot). A test
 * plug-in in the page records what Converse reports through its API events, so the test waits on
 * those events instead of polling.
 *
 * More steps of the browser check (an upload) use `handle.evaluate()` with `window.gatehouseTest.api`,
 * Converse's API, or `handle.page` with the DevTools protocol.
 */
import { createServer, type Server } from 'node:http';
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { Browser, evaluate } from './cdp-browser.js';

/** node_modules/converse.js/dist, seen from dist/test/helpers/. */
export const CONVERSE_DIST = fileURLToPath(new URL('../../../node_modules/converse.js/dist/', import.meta.url));

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.mp3': 'audio/mpeg',
  '.ogg': 'audio/ogg',
  '.map': 'application/json',
};

export interface ConverseOptions {
  /** wss://host:port/xmpp-websocket */
  websocketUrl: string;
  jid: string;
  password: string;
  /** Extra settings for converse.initialize(). */
  settings?: Record<string, unknown>;
}

export interface ReceivedMessage {
  from: string;
  body: string;
}

export interface ConverseHandle {
  browser: Browser;
  /** The DevTools session of the page. */
  page: string;
  /** The page's origin (http://127.0.0.1:port), where dist/ is served under /dist/. */
  origin: string;
  evaluate<T>(expression: string): Promise<T>;
  /** Opens a chat with `to` and sends `body` as Converse's chat box does. */
  sendMessage(to: string, body: string): Promise<void>;
  /** Resolves with the first message (received since the start) whose body is `body`. */
  message(body: string): Promise<ReceivedMessage>;
  screenshot(file: string): Promise<void>;
  close(): Promise<void>;
}

function page(o: ConverseOptions): string {
  const settings = {
    assets_path: '/dist/',
    websocket_url: o.websocketUrl,
    jid: o.jid,
    password: o.password,
    auto_login: true,
    discover_connection_methods: false,
    view_mode: 'fullscreen',
    allow_non_roster_messaging: true,
    play_sounds: false,
    show_desktop_notifications: false,
    whitelisted_plugins: ['gatehouse-test'],
    loglevel: 'debug',
    ...o.settings,
  };
  // converse.min.js is an ES module that sets window.converse; module scripts run in document order.
  // The plug-in keeps Converse's API and what its events report; waiters are resolved by events.
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Converse.js on Gatehouse</title>
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head>
<body class="converse-fullscreen">
<script type="module">
  const t = (window.gatehouseTest = { api: null, messages: [], waiters: [], errors: [] });
  let onConnected;
  t.connected = new Promise((resolve) => (onConnected = resolve));
  t.message = (body) => {
    const found = t.messages.find((m) => m.body === body);
    return found ? Promise.resolve(found) : new Promise((resolve) => t.waiters.push({ body, resolve }));
  };
  converse.plugins.add('gatehouse-test', {
    initialize() {
      const api = (t.api = this._converse.api);
      api.listen.on('connected', () => onConnected(true));
      api.listen.on('message', (data) => {
        const stanza = data.stanza;
        const body = stanza?.querySelector(':scope > body')?.textContent;
        if (!body) return;
        const m = { from: stanza.getAttribute('from'), body };
        t.messages.push(m);
        for (const w of t.waiters.filter((w) => w.body === body)) {
          t.waiters.splice(t.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      });
    },
  });
  converse.initialize(${JSON.stringify(settings)}).catch((e) => t.errors.push(String(e)));
</script></body></html>`;
}

/** Serves the page at / and converse.js's dist/ at /dist/ on a loopback port. */
async function serve(html: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      return void res.end(html);
    }
    const file = normalize(join(CONVERSE_DIST, path.replace(/^\/dist\//, '')));
    if (!path.startsWith('/dist/') || !file.startsWith(CONVERSE_DIST.endsWith(sep) ? CONVERSE_DIST : CONVERSE_DIST + sep)) {
      res.writeHead(404);
      return void res.end();
    }
    try {
      if (!statSync(file).isFile()) throw new Error('not a file');
    } catch {
      res.writeHead(404);
      return void res.end();
    }
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** Starts Chromium with Converse.js logging in as `jid`; resolves once Converse reports the session ('connected'). */
export async function startConverse(o: ConverseOptions): Promise<ConverseHandle> {
  const server = await serve(page(o));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const profile = mkdtempSync(join(tmpdir(), 'gatehouse-converse-'));
  const browser = Browser.launch(profile);
  const stop = async (): Promise<void> => {
    await browser.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    const { targetId } = await browser.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await browser.send('Target.attachToTarget', { targetId, flatten: true });
    await browser.send('Page.enable', {}, sessionId);
    await browser.send('Runtime.enable', {}, sessionId);
    await browser.send('Emulation.setDeviceMetricsOverride', { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false }, sessionId);
    const loaded = browser.event('Page.loadEventFired', sessionId);
    await browser.send('Page.navigate', { url: `${origin}/` }, sessionId);
    await loaded;
    const ev = <T>(expression: string) => evaluate<T>(browser, sessionId, expression);
    const connected = await ev<boolean>(
      `Promise.race([window.gatehouseTest.connected, new Promise((_, reject) => setTimeout(() => reject(new Error('Converse did not connect: ' + window.gatehouseTest.errors.join('; '))), 15000))])`,
    );
    if (connected !== true) throw new Error('Converse did not connect');
    return {
      browser,
      page: sessionId,
      origin,
      evaluate: ev,
      async sendMessage(to, body) {
        await ev(`(async () => {
          const chat = await window.gatehouseTest.api.chats.open(${JSON.stringify(to)}, {}, true);
          await chat.sendMessage({ body: ${JSON.stringify(body)} });
          return true;
        })()`);
      },
      async message(body) {
        return ev<ReceivedMessage>(`window.gatehouseTest.message(${JSON.stringify(body)})`);
      },
      async screenshot(file) {
        const shot = await browser.send('Page.captureScreenshot', { format: 'png' }, sessionId);
        writeFileSync(file, Buffer.from(shot.data, 'base64'));
      },
      close: stop,
    };
  } catch (err) {
    const console = pageConsole(browser).slice(-30).join('\n');
    await stop();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\npage console:\n${console}`);
  }
}

/** What the page wrote to its console and the exceptions it threw, for a failure's message. */
function pageConsole(browser: Browser): string[] {
  return browser.events.flatMap((e) => {
    if (e.method === 'Runtime.consoleAPICalled') return [`${e.params.type}: ${(e.params.args as { value?: unknown; description?: string }[]).map((a) => a.value ?? a.description).join(' ')}`.slice(0, 500)];
    if (e.method === 'Runtime.exceptionThrown') return [`exception: ${e.params.exceptionDetails?.exception?.description ?? e.params.exceptionDetails?.text}`.slice(0, 500)];
    return [];
  });
}
