/**
 * Programs from Debian that some proofs run against (ngIRCd, Prosody, ejabberd, Chromium, slixmpp,
 * systemd's tools).
 *
 * Locally a missing one skips the tests that need it, saying why. CI must not pass with a proof
 * skipped, so GATEHOUSE_TEST_REQUIRE lists the ones that have to be there (.ci/run sets it to all
 * of them): a missing required one adds a failing test naming what is missing and how to install
 * it, and the tests that need it are skipped (they could only fail less clearly).
 *
 * Use it at module level, as the `skip` option: `describe('...', { skip: skipWithout('ngircd') }, ...)`.
 */
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const NGIRCD = '/usr/sbin/ngircd';
export const INSPIRCD = '/usr/sbin/inspircd';
export const PROSODY = '/usr/bin/prosody';
export const PROSODYCTL = '/usr/bin/prosodyctl';
export const PROSODY_MIGRATOR = '/usr/bin/prosody-migrator';
export const EJABBERDCTL = '/usr/sbin/ejabberdctl';
export const CHROMIUM = '/usr/bin/chromium';
export const PYTHON = '/usr/bin/python3';
export const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
export const SYSTEMD_SYSUSERS = '/usr/bin/systemd-sysusers';
export const SYSTEMD_TMPFILES = '/usr/bin/systemd-tmpfiles';

export const REQUIRE_VARIABLE = 'GATEHOUSE_TEST_REQUIRE';

interface Dependency {
  /** Why it cannot be used, or null when it can. */
  missing(): string | null;
  install: string;
}

const missingFile = (...paths: string[]) => () => {
  const absent = paths.filter((p) => !existsSync(p));
  return absent.length ? `${absent.join(' and ')} not installed` : null;
};

const DEPENDENCIES = {
  ngircd: { missing: missingFile(NGIRCD), install: 'apt-get install ngircd' },
  inspircd: { missing: missingFile(INSPIRCD), install: 'apt-get install inspircd' },
  prosody: { missing: missingFile(PROSODY, PROSODYCTL, PROSODY_MIGRATOR), install: 'apt-get install prosody' },
  ejabberd: {
    // ejabberdctl itself switches to the ejabberd user when run as root and refuses anyone else.
    missing: () => {
      const absent = missingFile(EJABBERDCTL)();
      if (absent) return absent;
      if (process.getuid?.() === 0) return null;
      const r = spawnSync('id', ['-un'], { encoding: 'utf8' });
      return r.stdout.trim() === 'ejabberd' ? null : 'ejabberdctl runs only as root or as the ejabberd user';
    },
    install: 'apt-get install ejabberd',
  },
  chromium: { missing: missingFile(CHROMIUM), install: 'apt-get install chromium' },
  systemd: { missing: missingFile(SYSTEMD_ANALYZE, SYSTEMD_SYSUSERS, SYSTEMD_TMPFILES), install: 'apt-get install systemd' },
  slixmpp: {
    // python3 alone is not enough: the peer script imports slixmpp, and without it would only time out.
    missing: () => {
      if (!existsSync(PYTHON)) return `${PYTHON} not installed`;
      const r = spawnSync(PYTHON, ['-c', 'import slixmpp'], { encoding: 'utf8', timeout: 30_000 });
      return r.status === 0 ? null : `slixmpp cannot be imported by ${PYTHON}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').at(-1)}`;
    },
    install: 'apt-get install python3-slixmpp',
  },
} satisfies Record<string, Dependency>;

export type Requirement = keyof typeof DEPENDENCIES;

export function knownRequirements(): Requirement[] {
  return Object.keys(DEPENDENCIES) as Requirement[];
}

/**
 * The names in GATEHOUSE_TEST_REQUIRE (comma or space separated). An unknown name is an error:
 * a typo must not quietly turn a required proof back into a skippable one.
 */
export function requiredByEnvironment(value = process.env[REQUIRE_VARIABLE] ?? ''): Set<Requirement> {
  const names = value.split(/[\s,]+/).filter(Boolean);
  const unknown = names.filter((n) => !(n in DEPENDENCIES));
  if (unknown.length) throw new Error(`${REQUIRE_VARIABLE}: unknown ${unknown.join(', ')} (known: ${knownRequirements().join(', ')})`);
  return new Set(names as Requirement[]);
}

export type Verdict = { run: true } | { run: false; skip: string; fail: string | null };

/** What to do about one dependency: run, skip with a reason, or skip and fail (required). */
export function verdict(name: Requirement, missing: string | null, required: Set<Requirement>): Verdict {
  if (missing === null) return { run: true };
  const reason = `${name}: ${missing} (${DEPENDENCIES[name].install})`;
  if (!required.has(name)) return { run: false, skip: reason, fail: null };
  return { run: false, skip: `${reason}; required, reported as a failure`, fail: `${REQUIRE_VARIABLE} requires ${name}, but ${reason}` };
}

const checked = new Map<Requirement, Verdict>();

/**
 * The `skip` option for tests that need `name`: false when it is there, otherwise the reason.
 * When GATEHOUSE_TEST_REQUIRE names it, a failing test is added (once per file) as well.
 */
export function skipWithout(name: Requirement): string | false {
  let v = checked.get(name);
  if (!v) {
    v = verdict(name, DEPENDENCIES[name].missing(), requiredByEnvironment());
    checked.set(name, v);
    if (!v.run && v.fail) {
      const message = v.fail;
      test(`required dependency ${name} is installed`, () => {
        throw new Error(message);
      });
    }
  }
  return v.run ? false : v.skip;
}
