/**
 * The gateway sharding strategy the adapter gives discord.js: @discordjs/ws's own single-process
 * strategy, except that destroying it stops its shards for good.
 *
 * @discordjs/ws 1.2 has two races that otherwise leave a "zombie" connection behind after
 * Client#destroy (a bot that stays online, or reconnects every 500 ms, with nobody listening):
 * - destroying a shard while it waits for HELLO or READY (during a login, or a reconnect attempt
 *   during an outage) aborts that wait, whose handler destroys the shard again "to reconnect";
 *   the first destroy then never finishes and the shard logs in again by itself;
 * - a reconnect already scheduled (500 ms after a failed attempt) still runs after a destroy.
 * - a connection still being opened (the gateway has not answered the upgrade yet) is left as
 *   it is with its error handler removed: when the answer is a refusal (503 during an outage),
 *   the WebSocket emits 'error' with no listener, which is an uncaught exception that ends the
 *   process; when it is accepted, a connection nobody owns stays open.
 * So before destroying, the waits are dropped (not aborted: the connection closing ends them),
 * each shard's reconnect is disarmed, and a connection still opening is ended (its late errors
 * go to a listener that ignores them). discord.js destroys the strategy only when the client is
 * destroyed (logout, a failed login), so a destroy here is always final.
 */
import { SimpleShardingStrategy } from 'discord.js';

interface ShardInternals {
  timeoutAbortControllers?: { clear(): void };
  internalConnect?: () => Promise<void>;
  connection?: { readyState: number; on(event: 'error', fn: () => void): unknown; terminate(): void } | null;
}

/** ws's WebSocket.CONNECTING. */
const CONNECTING = 0;

export class FinalDestroyStrategy extends SimpleShardingStrategy {
  override async destroy(options?: Parameters<SimpleShardingStrategy['destroy']>[0]): Promise<void> {
    const shards = (this as unknown as { shards?: { values(): Iterable<ShardInternals> } }).shards;
    for (const shard of shards?.values() ?? []) {
      shard.timeoutAbortControllers?.clear();
      if (typeof shard.internalConnect === 'function') shard.internalConnect = async () => undefined;
      const connection = shard.connection;
      if (connection && typeof connection.on === 'function') {
        connection.on('error', () => undefined);
        if (connection.readyState === CONNECTING) connection.terminate();
      }
    }
    return super.destroy(options);
  }
}
