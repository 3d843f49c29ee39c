import type { Config } from '../config/index.js';

/** The `cluster` configuration section (server/cluster/config.ts), as parsed. */
export type ClusterConfig = Config['cluster'];
