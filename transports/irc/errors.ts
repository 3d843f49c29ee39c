/** Errors of IRC commands a user asked for (kick, topic, nick change, send) that the server refused. */

/** XMPP stanza error conditions the kit can put on its answer. */
export type IrcCommandCondition =
  | 'bad-request'
  | 'conflict'
  | 'forbidden'
  | 'item-not-found'
  | 'not-acceptable'
  | 'not-allowed'
  | 'remote-server-timeout'
  | 'service-unavailable';

export class IrcCommandError extends Error {
  readonly kind = 'command';
  constructor(
    message: string,
    readonly condition: IrcCommandCondition,
  ) {
    super(message);
  }
}
