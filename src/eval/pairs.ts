/**
 * Lines up predictions with references for ROUGE and accuracy: either one file holding both fields,
 * or two files joined by a key field (when both have it) or by line order (then the counts must match —
 * a silent misalignment would make every score meaningless).
 */
import { readTable, requireText, getField, rowLocation, type Row } from "../data/files.ts";
import { UserError } from "../util/errors.ts";

export interface PairOptions {
  pred: string;
  /** Reference file; omitted = the reference field is read from the prediction file. */
  ref?: string;
  predField: string;
  refField: string;
  /** Join key present in both files (e.g. "id" or "query"); omitted = line order. */
  key?: string;
}

export interface Pair {
  key: string;
  prediction: string;
  reference: string;
}

function loc(row: Row, i: number): string {
  const l = rowLocation(row, i + 1);
  return typeof l === "number" ? `:${l}` : ` (${l})`;
}

function keyOf(row: Row, key: string, file: string, i: number): string {
  const v = getField(row, key);
  if (v === undefined || v === null) throw new UserError(`${file}${loc(row, i)}: field '${key}' (the join key) is missing`);
  return String(v);
}

/** Prediction text may legitimately be empty (a model can answer nothing); null/missing is an error. */
function predText(row: Row, field: string, file: string, i: number): string {
  const v = getField(row, field);
  if (typeof v === "string") return v;
  throw new UserError(`${file}${loc(row, i)}: field '${field}': expected the prediction text, got ${v === undefined ? "nothing (field missing)" : v === null ? "null" : typeof v} (fields present: ${Object.keys(row).join(", ")})`);
}

export async function loadPairs(o: PairOptions): Promise<Pair[]> {
  const preds = await readTable(o.pred);
  if (!o.ref) {
    return preds.map((r, i) => ({
      key: o.key ? keyOf(r, o.key, o.pred, i) : String(i),
      prediction: predText(r, o.predField, o.pred, i),
      reference: requireText(r, o.refField, { file: o.pred, row: i + 1 }),
    }));
  }
  const refs = await readTable(o.ref);
  if (o.key) {
    const byKey = new Map<string, string>();
    refs.forEach((r, i) => byKey.set(keyOf(r, o.key!, o.ref!, i), requireText(r, o.refField, { file: o.ref!, row: i + 1 })));
    const missing: string[] = [];
    const out: Pair[] = [];
    preds.forEach((r, i) => {
      const k = keyOf(r, o.key!, o.pred, i);
      const ref = byKey.get(k);
      if (ref === undefined) missing.push(k);
      else out.push({ key: k, prediction: predText(r, o.predField, o.pred, i), reference: ref });
    });
    if (missing.length) throw new UserError(`${missing.length} prediction(s) in ${o.pred} have no reference in ${o.ref} with the same '${o.key}', e.g. ${JSON.stringify(missing[0]).slice(0, 80)}`);
    return out;
  }
  if (preds.length !== refs.length) throw new UserError(`${o.pred} has ${preds.length} records but ${o.ref} has ${refs.length}: without --key they are matched line by line, so the counts must be equal`);
  return preds.map((r, i) => ({
    key: String(i),
    prediction: predText(r, o.predField, o.pred, i),
    reference: requireText(refs[i], o.refField, { file: o.ref!, row: i + 1 }),
  }));
}
