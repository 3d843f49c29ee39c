/** XEP-0082 DateTime in UTC, whole seconds. */
export function utcDateTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
