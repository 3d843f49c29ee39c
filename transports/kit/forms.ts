/** XEP-0004 data forms: building forms and reading submissions. */
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

export type FieldType =
  | 'boolean'
  | 'fixed'
  | 'hidden'
  | 'jid-multi'
  | 'jid-single'
  | 'list-multi'
  | 'list-single'
  | 'text-multi'
  | 'text-private'
  | 'text-single';

export interface FormField {
  var?: string;
  type?: FieldType;
  label?: string;
  desc?: string;
  required?: boolean;
  values?: string[];
  options?: { label?: string; value: string }[];
}

export interface FormSpec {
  title?: string;
  instructions?: string;
  /** Adds the hidden FORM_TYPE field first (XEP-0068). */
  formType?: string;
  fields: FormField[];
  /** Result forms with several items (XEP-0004 §3.4): column definitions and rows. */
  reported?: FormField[];
  items?: FormField[][];
}

function fieldElement(f: FormField, withType = true): Element {
  return x(
    'field',
    { var: f.var, type: withType ? f.type : undefined, label: f.label },
    f.desc ? x('desc', {}, f.desc) : null,
    f.required ? x('required') : null,
    (f.values ?? []).map((v) => x('value', {}, v)),
    (f.options ?? []).map((o) => x('option', { label: o.label }, x('value', {}, o.value))),
  );
}

export function dataForm(type: 'form' | 'result' | 'submit' | 'cancel', spec: FormSpec): Element {
  const form = x('x', { xmlns: NS.dataForms, type });
  if (spec.title) form.append(x('title', {}, spec.title));
  if (spec.instructions) form.append(x('instructions', {}, spec.instructions));
  if (spec.formType) form.append(fieldElement({ var: 'FORM_TYPE', type: 'hidden', values: [spec.formType] }));
  for (const f of spec.fields) form.append(fieldElement(f));
  if (spec.reported) {
    form.append(x('reported', {}, spec.reported.map((f) => fieldElement(f))));
    for (const item of spec.items ?? []) form.append(x('item', {}, item.map((f) => fieldElement(f, false))));
  }
  return form;
}

/** The first data form child of `parent` (optionally of one type). */
export function findForm(parent: Element, type?: string): Element | undefined {
  return parent.getChildren('x', NS.dataForms).find((f) => type === undefined || f.attrs.type === type);
}

/** Values of a submitted form by field var (FORM_TYPE included). */
export function readForm(form: Element): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const field of form.getChildren('field')) {
    const name = field.attrs.var;
    if (!name) continue;
    out.set(
      name,
      field.getChildren('value').map((v) => v.text()),
    );
  }
  return out;
}

/** A boolean field value (XEP-0004: "1"/"true" or "0"/"false"); null if neither. */
export function parseBoolean(v: string | undefined): boolean | null {
  if (v === undefined) return null;
  const t = v.trim().toLowerCase();
  if (t === '1' || t === 'true') return true;
  if (t === '0' || t === 'false') return false;
  return null;
}
