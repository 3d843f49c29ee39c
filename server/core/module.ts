/**
 * Assembling modules into a server (used by main.ts and the CLI): the load-order check of
 * `needs` against `provides`, and the retention classes of a set of modules. The contract itself
 * is GatehouseModule in context.ts.
 */
import type { GatehouseModule } from './context.js';
import type { RetentionClass } from './retention-class.js';

/**
 * Throws, naming both modules, when a module needs a service no module before it provides, or when
 * two modules have the same name, provide the same service or declare the same command.
 */
export function checkModuleOrder(modules: readonly GatehouseModule[]): void {
  const providedBy = new Map<string, string>();
  const commandOf = new Map<string, string>();
  const names = new Set<string>();
  for (const [i, m] of modules.entries()) {
    if (names.has(m.name)) throw new Error(`module '${m.name}' is listed twice`);
    names.add(m.name);
    const declared = [...(m.commands?.cli ?? []).map((d) => `command ${d.name}`), ...Object.keys(m.commands?.control ?? {}).map((n) => `control command ${n}`)];
    for (const c of declared) {
      if (c.startsWith('control ') && !/^control command [a-z][a-z0-9.-]*$/.test(c)) throw new Error(`module '${m.name}' declares a badly named ${c}`);
      const other = commandOf.get(c);
      if (other) throw new Error(`${c} is declared by both module '${other}' and module '${m.name}'`);
      commandOf.set(c, m.name);
    }
    for (const need of m.needs ?? []) {
      if (providedBy.has(need)) continue;
      const later = modules.slice(i + 1).find((o) => o.provides?.includes(need));
      throw new Error(
        later
          ? `module '${m.name}' needs service '${need}', provided by module '${later.name}', which is listed after it: load '${later.name}' first`
          : `module '${m.name}' needs service '${need}', which no module provides`,
      );
    }
    for (const p of m.provides ?? []) {
      const other = providedBy.get(p);
      if (other) throw new Error(`service '${p}' is provided by both module '${other}' and module '${m.name}'`);
      providedBy.set(p, m.name);
    }
  }
}

/** The retention classes the given modules own, in module order; a name used twice is an error. */
export function retentionClassesOf(modules: readonly GatehouseModule[]): RetentionClass[] {
  const byName = new Map<string, { cls: RetentionClass; module: string }>();
  for (const m of modules) {
    for (const cls of m.retention ?? []) {
      if (!/^[a-z0-9][a-z0-9-]*$/.test(cls.name)) throw new Error(`retention class name must be kebab-case: ${cls.name} (module '${m.name}')`);
      const other = byName.get(cls.name);
      if (other) throw new Error(`retention class '${cls.name}' is owned by both module '${other.module}' and module '${m.name}'`);
      byName.set(cls.name, { cls, module: m.name });
    }
  }
  return [...byName.values()].map((e) => e.cls);
}
