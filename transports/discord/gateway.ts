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
 * So before destroying, the waits are dropped (not aborted: the connection closing ends them) and
 * each shard's reconnect is disarmed. discord.js destroys the strategy only when the client is
 * destroyed (logout, a failed login), so a destroy here is always final.
 */
import { SimpleShardingStrategy } from 'discord.js';

interface ShardInternals {
  timeoutAbortControllers?: { clear(): void };
  internalConnect?: () => Promise<void>;
}

export class FinalDestroyStrategy extends SimpleShardingStrategy {
  override async destroy(options?: Parameters<SimpleShardingStrategy['destroy']>[0]): Promise<void> {
    const shards = (this as unknown as { shards?: { values(): Iterable<ShardInternals> } }).shards;
    for (const shard of shards?.values() ?? []) {
      shard.timeoutAbortControllers?.clear();
      if (typeof shard.internalConnect === 'function') shard.internalConnect = async () => undefined;
    }
    return super.destroy(options);
  }
}
