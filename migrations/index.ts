/**
 * Every migration, in order. Passed to TypeORM as classes (not globs) so that the compiled
 * dist/migrations/*.js load without any file-system discovery.
 */
import { InitialSchema1732600000000 } from './1732600000000-InitialSchema.js';

export const migrations = [InitialSchema1732600000000];
