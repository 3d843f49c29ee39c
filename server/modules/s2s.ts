/**
 * Server-to-server federation (RFC 6120, XEP-0220, XEP-0185, XEP-0178, XEP-0368; PRIVACY.md P18):
 * stanzas for other servers' users leave over authenticated, encrypted links.
 *
 * The module takes message/presence/iq events whose recipient is on another domain, after the
 * feature modules (roster, carbons, ...) had them, in the 'federate' phase; component domains are left to
 * the router's own 'fallback' phase, which delivers to the component or bounces. The links
 * themselves are server/federation/service.ts (manager, queue, bounces), server/federation/s2s-out.ts and
 * server/federation/s2s-in.ts (the inbound listener, opened by main.ts after the modules loaded).
 *
 * Federation is on when `listen.s2s` names at least one address (dialback needs other servers to
 * reach us); otherwise the module does nothing and stanzas to other domains bounce with
 * remote-server-not-found as before. Federation turned on in the configuration but held back until
 * its privacy-policy change takes effect (P22) starts when it comes into force ('config/in-force').
 *
 * A factory: each server needs its own instance (call it inside allModules()).
 */
import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import { S2sService, type S2sOptions } from '../federation/service.js';
import { s2sConfigSection } from '../federation/config.js';

export function createS2sModule(opts: S2sOptions = {}): GatehouseModule {
  let service: S2sService | null = null;
  const cleanup: (() => void)[] = [];
  return {
    name: 's2s',
    config: s2sConfigSection,
    specs: [
      { id: 'RFC 6120', version: 'sections 4-6, 13.7 (server-to-server)', status: 'complete', note: 'STARTTLS, SASL EXTERNAL, unidirectional links' },
      { id: 'XEP-0220', version: '1.1.1', status: 'complete', note: 'dialback with piggybacking and dialback errors' },
      { id: 'XEP-0185', version: '1.0', status: 'complete' },
      { id: 'XEP-0178', version: '1.2', status: 'complete', note: 'SASL EXTERNAL for servers, both directions' },
      { id: 'XEP-0368', version: '1.1.0', status: 'complete', note: 'xmpps-server SRV records outbound; direct TLS on the s2s port inbound' },
      { id: 'XEP-0344', version: '0.4', status: 'partial', note: 'dialback is accepted without a verify round trip when the certificate is valid' },
    ],
    clauses: ['P18'],
    provides: ['s2s'],
    async load(ctx) {
      if (ctx.config.listen.s2s.length > 0) return enable(ctx);
      ctx.log.info(ctx.configInForce.file.listen.s2s.length > 0 ? 'federation is held back until its privacy policy change takes effect' : 'federation is off (listen.s2s is empty)');
      cleanup.push(
        ctx.hooks.on('config/in-force', async ({ after }) => {
          if (!service && after.listen.s2s.length > 0) await enable(ctx);
        }),
      );
    },
    unload() {
      for (const c of cleanup.splice(0)) c();
      service?.stop();
      service = null;
    },
  };

  async function enable(ctx: ServerContext): Promise<void> {
    const s = (service = new S2sService(ctx, opts));
    await s.init();
    ctx.services.provide('s2s', s);
    // In a cluster one node keeps the outgoing link to a remote domain (the domain's owner among
    // the living nodes); the others hand it their stanzas for that domain.
    const cluster = ctx.services.get('cluster');
    if (cluster) cleanup.push(cluster.serve('s2s', (stanza, from, to) => s.send({ stanza, from, to, origin: { kind: 'server' } })));
    const toRemote = (e: StanzaEvent): boolean => {
      // Component domains (and their subdomains) are the router's: it delivers or bounces.
      if (ctx.router.componentFor(e.to.domain) !== undefined) return false;
      const owner = cluster?.ownerOf('s2s', e.to.domain);
      // A stanza its owner did not take (not serving yet, died a moment ago) leaves over a link of
      // this node instead: never dropped without a bounce (RFC 6120 8.3).
      if (cluster && owner !== undefined && owner !== cluster.node) cluster.forward(owner, 's2s', e.stanza, e.from, e.to, () => s.send(e));
      else s.send(e);
      return true;
    };
    cleanup.push(ctx.hooks.on('message/remote', toRemote, 'federate'));
    cleanup.push(ctx.hooks.on('presence/remote', toRemote, 'federate'));
    cleanup.push(ctx.hooks.on('iq/remote', toRemote, 'federate'));
    // Renewed certificates (a reload): the next TLS handshake reads the files again.
    cleanup.push(ctx.hooks.on('config/in-force', ({ after }) => s.tls.refresh(after)));
  }
}
