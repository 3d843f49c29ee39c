/**
 * HTTP File Upload (XEP-0363): a client asks the upload service `upload.<host>` (found in the
 * host's disco#items) for a slot, PUTs the file over HTTPS, and shares the GET URL.
 *
 * - Slots are for the host's own users and for the server's configured components (`components`:
 *   the transports, which re-host attachments of other networks), anyone else gets not-allowed;
 *   one file of at most
 *   `upload.maxFileSize` (file-too-large), within `upload.quotaPerUser` bytes of stored files and
 *   open slots together, at most `upload.maxOpenSlots` open at once; a slot is valid for
 *   `upload.slotLifetime` and for one PUT. Slots live in memory: a restart forgets them.
 * - URLs are `/upload/<24 random base64url characters>.<ext>`: no user name, no file name (the
 *   name comes back in Content-Disposition); the PUT URL carries a second random token.
 * - Files (http.ts, files.ts) are streamed to disk, synced and renamed into place, and recorded in
 *   the module's table (storage.ts); nothing partial is ever served or kept.
 * - A component's files are accounted to the component (`upload.componentQuota`,
 *   `upload.componentMaxOpenSlots`, table upload_component_files): they belong to no account, are
 *   in no export, and only `retention.uploads` deletes them.
 * - Deleted after `retention.uploads` (retention class `uploads`), with the account (the rows by
 *   the foreign key, the files by this module on 'account/deleted'; files whose row is gone some
 *   other way, such as `gatehouse user delete` without the server, by the retention sweep).
 * - The account's export lists its files (name, size, type, URL, date), not their contents.
 * - Logs name file ids and sizes, never file names.
 *
 * The HTTPS side is the `http` service (core/http-service.ts); without an HTTPS listener
 * (`listen.https` empty) the module offers nothing.
 */
import type { GatehouseModule, ServerContext, AccountDataPart } from '../../core/context.js';
import type { StanzaEvent } from '../../core/hooks.js';
import type { HttpService } from '../../core/http-service.js';
import type { RetentionClass } from '../../core/retention-class.js';
import { inBatches } from '../../core/retention-class.js';
import { replyResult } from '../../core/iq.js';
import { KeyedSerial } from '../../core/quota.js';
import { Element, x } from '../../../shared/xml/element.js';
import { errorReply, type ErrorType } from '../../../shared/xml/stanza-errors.js';
import { NS } from '../../../shared/ns.js';
import { formatDurationWords, formatSizeLimit } from '../../../shared/format.js';
import type { Config } from '../../config/index.js';
import { randomBytes } from 'node:crypto';
import { uploadConfigSection } from './config.js';
import { uploadStorage, UPLOAD_LIMITS, type UploadRepository } from './storage.js';
import { FileStore, newId } from './files.js';
import { extensionOf, mediaType, ROUTE_PATH, sameToken, uploadRouteHandler, type Slot } from './http.js';

export const NS_UPLOAD = 'urn:xmpp:http:upload:0';
/** The element of the account's export listing its uploads (a Gatehouse extension of XEP-0227). */
export const NS_UPLOAD_EXPORT = 'urn:gatehouse:uploads:0';

/** The upload service's domain for each host whose configuration in force offers uploads. */
export function uploadDomains(config: Config): Map<string, string> {
  const out = new Map<string, string>();
  if (!config.upload.enabled) return out;
  for (const { domain } of config.hosts) {
    const upload = config.upload.domains[domain] ?? config.upload.domain.replaceAll('{host}', domain);
    if (![...out.values()].includes(upload)) out.set(upload, domain);
  }
  return out;
}

function sendError(ctx: ServerContext, e: StanzaEvent, condition: string, text: string, type?: ErrorType, extra?: Element): true {
  const reply = errorReply(e.stanza, condition, text, type);
  if (!reply) return true;
  if (extra) reply.getChild('error')!.append(extra);
  reply.attrs.from = e.to.full;
  reply.attrs.to = e.from.full;
  if (e.origin.kind === 'c2s') e.origin.session.send(reply);
  else void ctx.router.send(reply);
  return true;
}

class UploadService {
  /** Upload domain → host. */
  domains = new Map<string, string>();
  private readonly slots = new Map<string, Slot>();
  private readonly serial = new KeyedSerial<number>();
  readonly files: FileStore;
  /** File ids of accounts being deleted, between 'account/deleting' and 'account/deleted'. */
  private readonly deleting = new Map<number, string[]>();

  constructor(
    private readonly ctx: ServerContext,
    readonly repo: UploadRepository,
    private readonly http: HttpService,
  ) {
    this.files = new FileStore(ctx.config.dataDir);
  }

  private readonly componentKeys = new Map<string, number>();

  private componentKey(domain: string): number {
    let k = this.componentKeys.get(domain);
    if (k === undefined) this.componentKeys.set(domain, (k = this.componentKeys.size));
    return k;
  }

  private prune(now: number): void {
    for (const [id, s] of this.slots) if (s.expiresAt <= now && s.token !== '') this.slots.delete(id);
  }

  refresh(): void {
    const { disco } = this.ctx;
    const next = new Map([...uploadDomains(this.ctx.config)].filter(([d]) => this.http.baseUrl(d) !== null));
    for (const d of this.domains.keys()) if (!next.has(d)) disco.serverItems.delete(d);
    this.domains = next;
    for (const d of next.keys()) disco.serverItems.set(d, 'HTTP File Upload');
  }

  handles(e: StanzaEvent): boolean {
    return this.domains.has(e.to.domain);
  }

  discoInfo(e: StanzaEvent): true {
    if (e.to.local || e.to.resource || e.stanza.firstElement()!.attrs.node !== undefined) return sendError(this.ctx, e, 'item-not-found', 'no such node');
    const max = this.ctx.config.upload.maxFileSize;
    return replyResult(
      this.ctx.router,
      e,
      x(
        'query',
        { xmlns: NS.discoInfo },
        x('identity', { category: 'store', type: 'file', name: 'HTTP File Upload' }),
        x('feature', { var: NS.discoInfo }),
        x('feature', { var: NS_UPLOAD }),
        x(
          'x',
          { xmlns: NS.dataForms, type: 'result' },
          x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, NS_UPLOAD)),
          x('field', { var: 'max-file-size' }, x('value', {}, String(max))),
        ),
      ),
    );
  }

  async request(e: StanzaEvent): Promise<true> {
    const { ctx } = this;
    const host = this.domains.get(e.to.domain)!;
    if (e.to.local || e.to.resource) return sendError(ctx, e, 'service-unavailable', 'not an upload service');
    const component = !e.from.local && ctx.config.components.some((c) => c.domain === e.from.domain) ? e.from.domain : null;
    if (!component && (!e.from.local || e.from.domain !== host)) return sendError(ctx, e, 'not-allowed', `only users of ${host} may upload here`);
    const req = e.stanza.firstElement()!;
    const cfg = ctx.config.upload;
    const rawName = req.attrs.filename ?? '';
    // Only the last path segment of what the client calls the file, without control characters.
    const fileName = rawName.split(/[/\\]/).pop()!.replace(/[\x00-\x1f\x7f]/g, '').trim();
    if (fileName === '' || [...fileName].length > UPLOAD_LIMITS.fileName) return sendError(ctx, e, 'bad-request', `filename must be 1 to ${UPLOAD_LIMITS.fileName} characters`);
    const sizeText = req.attrs.size ?? '';
    if (!/^\d{1,15}$/.test(sizeText)) return sendError(ctx, e, 'bad-request', 'size must be a number of bytes');
    const size = Number(sizeText);
    let contentType: string | null = null;
    if (req.attrs['content-type'] !== undefined && req.attrs['content-type'] !== '') {
      contentType = mediaType(req.attrs['content-type']);
      if (!contentType) return sendError(ctx, e, 'bad-request', 'content-type must be a media type such as image/jpeg');
    }
    if (size > cfg.maxFileSize) {
      return sendError(
        ctx,
        e,
        'not-acceptable',
        `File too large. The maximum file size is ${cfg.maxFileSize} bytes`,
        'modify',
        x('file-too-large', { xmlns: NS_UPLOAD }, x('max-file-size', {}, String(cfg.maxFileSize))),
      );
    }
    const base = this.http.baseUrl(e.to.domain);
    if (!base) return sendError(ctx, e, 'service-unavailable', 'the HTTPS service is not running');
    let accountId = 0;
    if (component) {
      if (cfg.componentQuota === 0) return sendError(ctx, e, 'not-allowed', 'components may not upload here (upload.componentQuota is 0)');
    } else {
      const account = await ctx.storage.accounts.get(e.from.local, host);
      if (!account) return sendError(ctx, e, 'not-allowed', `only users of ${host} may upload here`);
      accountId = account.id;
    }
    // Components are serialised under negative keys, apart from the account ids.
    const key = component ? -1 - this.componentKey(component) : accountId;
    const maxOpen = component ? cfg.componentMaxOpenSlots : cfg.maxOpenSlots;
    const quota = component ? cfg.componentQuota : cfg.quotaPerUser;
    return this.serial.run(key, async () => {
      const now = ctx.clock.now().getTime();
      this.prune(now);
      const open = [...this.slots.values()].filter((s) => (component ? s.component === component : s.accountId === accountId && s.component === undefined));
      if (open.length >= maxOpen) {
        const retry = new Date(Math.min(...open.map((s) => s.expiresAt)));
        return sendError(ctx, e, 'resource-constraint', `at most ${maxOpen} upload slots may be open at once`, 'wait', x('retry', { xmlns: NS_UPLOAD, stamp: retry.toISOString().replace(/\.\d{3}Z$/, 'Z') }));
      }
      if (quota > 0) {
        const stored = component ? await this.repo.componentUsage(component) : await this.repo.usage(accountId);
        const used = stored + open.reduce((n, s) => n + s.size, 0);
        if (used + size > quota) return sendError(ctx, e, 'resource-constraint', `upload quota reached (at most ${formatSizeLimit(quota)} of files)`, 'wait');
      }
      const id = newId();
      const token = randomBytes(18).toString('base64url');
      const path = `${base}${ROUTE_PATH}${id}${extensionOf(fileName)}`;
      const slot: Slot = { id, token, accountId, ...(component ? { component } : {}), size, contentType, fileName, getUrl: path, expiresAt: now + cfg.slotLifetime };
      this.slots.set(id, slot);
      ctx.log.debug('upload slot', { id, size, ...(component ? { component } : {}) });
      return replyResult(ctx.router, e, x('slot', { xmlns: NS_UPLOAD }, x('put', { url: `${path}?token=${token}` }), x('get', { url: path })));
    });
  }

  takeSlot(id: string, token: string): Slot | null {
    const slot = this.slots.get(id);
    if (!slot || slot.token === '' || !sameToken(slot.token, token)) return null;
    if (slot.expiresAt <= this.ctx.clock.now().getTime()) {
      this.slots.delete(id);
      return null;
    }
    // Taken: the empty token marks it in use (still counted for the quota) until it completes or fails.
    slot.token = '';
    return slot;
  }

  releaseSlot(slot: Slot): void {
    if (this.slots.get(slot.id) === slot) this.slots.delete(slot.id);
  }

  async complete(slot: Slot, contentType: string): Promise<boolean> {
    try {
      const row = { id: slot.id, fileName: slot.fileName, size: slot.size, contentType, url: slot.getUrl, createdAt: this.ctx.clock.now() };
      if (slot.component !== undefined) await this.repo.addComponentFile(slot.component, row);
      else await this.repo.add({ ...row, accountId: slot.accountId });
    } catch (err) {
      // Most likely the account was deleted while the file was on its way (foreign key).
      this.ctx.log.info('upload not recorded', { id: slot.id, error: String(err).slice(0, 200) });
      return false;
    }
    this.releaseSlot(slot);
    return true;
  }

  async accountDeleting(accountId: number): Promise<void> {
    for (const [id, s] of this.slots) if (s.accountId === accountId && s.component === undefined) this.slots.delete(id);
    this.deleting.set(accountId, (await this.repo.ofAccount(accountId)).map((f) => f.id));
  }

  async accountDeleted(accountId: number): Promise<void> {
    const ids = this.deleting.get(accountId) ?? [];
    this.deleting.delete(accountId);
    for (const id of ids) await this.files.remove(id);
    if (ids.length > 0) this.ctx.log.info('uploads of a deleted account removed', { count: ids.length });
  }
}

/** Files whose row is gone are removed once they are this old (an upload in progress has no row yet). */
const ORPHAN_AGE_MS = 3_600_000;

/** P11/P13: uploaded files are deleted `retention.uploads` after their upload, from disk and table. */
const uploadsClass: RetentionClass = {
  name: 'uploads',
  clause: 'P11',
  describe: (config) => `files uploaded with HTTP File Upload (XEP-0363): deleted ${formatDurationWords(config.retention.uploads)} after the upload, and with the account`,
  async run(env, now, opts) {
    const repo = env.storage.repository(uploadStorage);
    const files = new FileStore(env.config.dataDir);
    const before = new Date(now.getTime() - env.config.retention.uploads);
    if (opts.dryRun) return repo.countCreatedBefore(before);
    const n = await inBatches(opts.batch, async (limit) => {
      const ids = await repo.createdBefore(before, limit);
      await repo.delete(ids);
      for (const id of ids) await files.remove(id);
      return ids.length;
    });
    // Files without a row: their account was deleted where this module could not hear of it.
    const old = await files.listOld(new Date(Date.now() - ORPHAN_AGE_MS));
    const known = await repo.existing(old.ids);
    for (const id of old.ids) if (!known.has(id)) await files.remove(id);
    for (const name of old.staleTmp) await files.removeTmp(name);
    if (n > 0) env.log.info('expired uploads deleted', { count: n });
    return n;
  },
};

const accountData: AccountDataPart = {
  async export(storage, account) {
    const rows = await storage.repository(uploadStorage).ofAccount(account.id);
    if (rows.length === 0) return [];
    return [
      x(
        'uploads',
        { xmlns: NS_UPLOAD_EXPORT },
        rows.map((r) => x('file', { name: r.fileName, size: String(r.size), 'content-type': r.contentType, url: r.url, created: r.createdAt.toISOString() })),
      ),
    ];
  },
  claims: (el) => el.name === 'uploads' && el.xmlns === NS_UPLOAD_EXPORT,
  check: () => [],
  // The export lists the files, it does not hold them: there is nothing to restore.
  import: async () => {},
};

export function createUploadModule(): GatehouseModule {
  const cleanup: (() => void)[] = [];
  return {
    name: 'upload',
    specs: [
      {
        id: 'XEP-0363',
        version: '1.2.0',
        status: 'complete',
        note: 'service at upload.<host>; PUT URL with a one-time token, GET with byte ranges; files deleted after retention.uploads',
      },
    ],
    clauses: ['P11', 'P13', 'P23'],
    needs: ['http'],
    config: uploadConfigSection,
    storage: uploadStorage,
    retention: [uploadsClass],
    accountData,
    async load(ctx) {
      const http = ctx.services.need('http');
      const s = new UploadService(ctx, ctx.storage.repository(uploadStorage), http);
      await s.files.init();
      s.refresh();
      const { hooks } = ctx;
      cleanup.push(hooks.on('config/in-force', () => s.refresh()));
      cleanup.push(hooks.on(`iq-get/remote/${NS.discoInfo}:query`, (e) => (s.handles(e) ? s.discoInfo(e) : undefined)));
      cleanup.push(hooks.on(`iq-get/remote/${NS.discoItems}:query`, (e) => (s.handles(e) ? replyResult(ctx.router, e, x('query', { xmlns: NS.discoItems })) : undefined)));
      cleanup.push(hooks.on(`iq-get/remote/${NS_UPLOAD}:request`, (e) => (s.handles(e) ? s.request(e) : undefined)));
      // Everything else addressed to the service: IQs get service-unavailable, the rest is dropped.
      for (const kind of ['iq', 'message', 'presence'] as const) {
        cleanup.push(
          hooks.on(
            `${kind}/remote`,
            (e) => {
              if (!s.handles(e)) return undefined;
              const type = e.stanza.attrs.type;
              if (kind === 'iq' && (type === 'get' || type === 'set')) return sendError(ctx, e, 'service-unavailable', 'not supported by the upload service');
              if (kind === 'message' && type !== 'error') return sendError(ctx, e, 'service-unavailable', 'the upload service takes no messages');
              return true;
            },
            'intercept',
          ),
        );
      }
      cleanup.push(hooks.on('account/deleting', ({ account }) => s.accountDeleting(account.id)));
      cleanup.push(hooks.on('account/deleted', ({ account }) => s.accountDeleted(account.id)));
      cleanup.push(
        http.route({
          path: ROUTE_PATH,
          methods: ['GET', 'HEAD', 'PUT', 'OPTIONS'],
          handle: uploadRouteHandler({
            files: s.files,
            takeSlot: (id, token) => s.takeSlot(id, token),
            releaseSlot: (slot) => s.releaseSlot(slot),
            complete: (slot, type) => s.complete(slot, type),
            file: (id) => s.repo.get(id),
            log: ctx.log,
          }),
        }),
      );
    },
    unload() {
      for (const f of cleanup.splice(0)) f();
    },
  };
}
