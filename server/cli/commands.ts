/**
 * The one command surface of `gatehouse`: the core commands (core.ts) and every command a module
 * declares in its `commands.cli` (GatehouseModule, server/commands/command.ts), for the modules of
 * modules/index.ts. A command runs with the CommandContext built here, which carries what it may
 * need of the other modules (their declarations), so that no command imports modules/index.ts.
 */
import type { GatehouseModule } from '../core/context.js';
import { commandSet, type CommandContext, type CommandDefinition, type CommandSet } from '../commands/command.js';
import { coreCommands } from './core.js';
import { allModules } from '../modules/index.js';

/**
 * The commands of the core and of `modules`. A module's command whose name the core or another
 * module already uses is refused, naming both. The list is grouped by first word (`user export`
 * next to `user add`), each group where its first command comes.
 */
export function commandsOf(modules: readonly GatehouseModule[]): CommandSet {
  const owner = new Map<string, string>(Object.keys(coreCommands).map((n) => [n, 'the core']));
  const defs: CommandDefinition[] = [...Object.values(coreCommands)];
  for (const m of modules) {
    for (const def of m.commands?.cli ?? []) {
      const other = owner.get(def.name);
      if (other) throw new Error(`command ${def.name} of module '${m.name}' is already declared by ${other === 'the core' ? other : `module '${other}'`}`);
      owner.set(def.name, m.name);
      defs.push(def);
    }
  }
  const groups = new Map<string, CommandDefinition[]>();
  for (const d of defs) {
    const word = d.name.split(' ')[0]!;
    groups.set(word, [...(groups.get(word) ?? []), d]);
  }
  return commandSet(...[...groups.values()].flat());
}

/** What every command gets: the modules of modules/index.ts (fresh instances, not loaded). */
export function commandContext(modules: readonly GatehouseModule[] = allModules()): CommandContext {
  return { modules };
}

/** Every command of `gatehouse`, in the order of the command list. */
export const commands = commandsOf(allModules());
