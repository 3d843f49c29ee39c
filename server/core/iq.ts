import type { Element } from '../../shared/xml/element.js';
import type { StanzaEvent } from './hooks.js';
import type { Router } from './router.js';
import { errorReply, iqResult, type ErrorType } from '../../shared/xml/stanza-errors.js';

/**
 * Answers an IQ on behalf of the addressed entity (the host, or an account for IQs sent to a
 * bare JID or without 'to'). Replies to a local client go straight to its stream.
 */
export function replyResult(router: Router, event: StanzaEvent, payload?: Element): true {
  const reply = iqResult(event.stanza, payload);
  return deliverReply(router, event, reply);
}

/** An error reply; `app` is an application-specific condition element (RFC 6120 8.3.2) added to it. */
export function replyError(router: Router, event: StanzaEvent, condition: string, text?: string, type?: ErrorType, app?: Element): true {
  const reply = errorReply(event.stanza, condition, text, type);
  if (reply && app) reply.getChild('error')!.append(app);
  return reply ? deliverReply(router, event, reply) : true;
}

function deliverReply(router: Router, event: StanzaEvent, reply: Element): true {
  reply.attrs.from = event.to.full;
  reply.attrs.to = event.from.full;
  if (event.origin.kind === 'c2s') {
    if (event.stanza.attrs.to === undefined) delete reply.attrs.from;
    event.origin.session.send(reply);
  } else {
    void router.send(reply);
  }
  return true;
}
