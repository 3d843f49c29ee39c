import type { GatehouseModule } from '../core/context.js';
import { pingModule } from './ping.js';

/** Every feature module, in load order. The core never imports a feature directly. */
export function allModules(): GatehouseModule[] {
  return [pingModule];
}
