// YAML text against schema.ts (pure, no DOM, no CodeMirror): lint
// diagnostics with offsets (syntax errors, unknown fields, wrong types)
// and the completion context at a cursor (the object path of the key being
// typed, worked out from indentation so that it works on half-written
// documents too).
import { parseDocument, isMap, isSeq, isScalar, isPair, type Node } from "yaml";
import { Schemas, type Schema, type PathElem, type Field, unknownMessage } from "./schema";

export interface Diagnostic {
  from: number;
  to: number;
  severity: "error" | "warning" | "info";
  message: string;
}

/** kindOf reads the top-level apiVersion and kind (also from a half-written document). */
export function kindOf(text: string): { apiVersion: string; kind: string } {
  const get = (k: string) => text.match(new RegExp(`^${k}:[ \\t]*["']?([^"'\\s#]+)`, "m"))?.[1] ?? "";
  return { apiVersion: get("apiVersion"), kind: get("kind") };
}

/**
 * lint parses text as YAML 1.1 (what the API server's YAML decoder reads:
 * yes/no are booleans) and checks it against the schema of its
 * apiVersion/kind when schemas has it.
 */
export function lint(text: string, schemas: Schemas | null): Diagnostic[] {
  const doc = parseDocument(text, { version: "1.1", prettyErrors: false, uniqueKeys: true });
  const out: Diagnostic[] = [];
  const clamp = (n: number) => Math.max(0, Math.min(n, text.length));
  for (const e of doc.errors) {
    const from = clamp(e.pos[0]);
    out.push({ from, to: Math.max(clamp(e.pos[1]), Math.min(from + 1, text.length)), severity: "error", message: `YAML syntax: ${e.message.split("\n")[0]}` });
  }
  if (out.length > 0 || !schemas) return out;
  const { apiVersion, kind } = kindOf(text);
  const root = apiVersion && kind ? schemas.forKind(apiVersion, kind) : undefined;
  if (!root) return out;
  const span = (n: Node | null | undefined, fallback: number) => {
    const r = n?.range;
    return r ? { from: r[0], to: Math.max(r[1], r[0] + 1) } : { from: fallback, to: fallback + 1 };
  };
  const walk = (node: unknown, s: Schema | undefined, path: PathElem[]) => {
    if (!node || schemas.resolve(s) === schemaAny) return;
    const want = schemas.container(s);
    if (isMap(node)) {
      if (want !== "object") {
        out.push({ ...span(node, 0), severity: "error", message: `${where(path)}expected ${schemas.typeName(s)}, got object` });
        return;
      }
      for (const p of node.items) {
        if (!isPair(p) || !isScalar(p.key)) continue;
        const key = String(p.key.value);
        const c = schemas.child(s!, key);
        if (c === undefined) out.push({ ...span(p.key as Node, 0), severity: "error", message: unknownMessage(key, path) });
        else walk(p.value, c, [...path, key]);
      }
    } else if (isSeq(node)) {
      if (want !== "array") {
        out.push({ ...span(node, 0), severity: "error", message: `${where(path)}expected ${schemas.typeName(s)}, got list` });
        return;
      }
      node.items.forEach((it, i) => walk(it, schemas.child(s!, i), [...path, i]));
    } else if (isScalar(node)) {
      const v = node.value;
      if (v === null || v === undefined) return;
      const m = want ? `expected ${schemas.typeName(s)}, got ${typeof v === "number" ? (Number.isInteger(v) ? "integer" : "number") : typeof v}` : schemas.checkScalar(s, v);
      if (m) out.push({ ...span(node, 0), severity: "error", message: `${where(path)}${m}` });
    }
  };
  walk(doc.contents, root, []);
  return out;
}

const schemaAny = new Schemas().resolve(undefined);

function where(path: PathElem[]) {
  return path.length ? `${path.map((e) => (typeof e === "number" ? `[${e}]` : `.${e}`)).join("").replace(/^\./, "")}: ` : "";
}

interface LineInfo {
  indent: number;
  dashes: number[]; // columns of the "- " markers
  keyCol: number;
  key: string | null;
  empty: boolean; // the key has no value on its line (a nested block follows)
}

function lineInfo(line: string): LineInfo | null {
  if (/^\s*(#.*)?$/.test(line)) return null;
  const indent = line.match(/^ */)![0].length;
  const dashes: number[] = [];
  let i = indent;
  while (line[i] === "-" && (i + 1 === line.length || line[i + 1] === " ")) {
    dashes.push(i);
    i++;
    while (line[i] === " ") i++;
  }
  const rest = line.slice(i);
  const m = rest.match(/^("[^"]*"|'[^']*'|[^\s#'"{[][^:#]*?)[ \t]*:(?:[ \t]+|$)(.*)$/);
  const value = m ? m[2].replace(/(^|\s)#.*$/, "").trim() : "";
  return { indent, dashes, keyCol: i, key: m ? m[1].replace(/^["']|["']$/g, "") : null, empty: !!m && value === "" };
}

/**
 * keyContext is where a key is being typed at pos: the object path of
 * the mapping it goes into, the word typed so far and where it starts;
 * null when pos is not at a key (inside a value, a comment, a block
 * scalar line that the indentation cannot place).
 */
export function keyContext(text: string, pos: number): { path: PathElem[]; prefix: string; from: number } | null {
  const lineStart = text.lastIndexOf("\n", pos - 1) + 1;
  const before = text.slice(lineStart, pos);
  const cm = before.match(/^( *)((?:- +)*)([\w./-]*)$/);
  if (!cm) return null;
  const prefix = cm[3];
  const cur = lineInfo(before.slice(0, before.length - prefix.length) + "x:") ?? { indent: 0, dashes: [], keyCol: 0, key: null, empty: true };
  const rev: PathElem[] = []; // path from the innermost outwards
  for (let d = cur.dashes.length - 1; d >= 0; d--) rev.push(0);
  let K = cur.dashes.length ? cur.dashes[0] : cur.keyCol;
  let afterDash = cur.dashes.length > 0;
  const lines = text.slice(0, lineStart).split("\n");
  lines.pop(); // the empty string after the last newline
  for (let n = lines.length - 1; n >= 0; n--) {
    if (/^(---|\.\.\.)\s*$/.test(lines[n])) break;
    const li = lineInfo(lines[n]);
    if (!li) continue;
    const outer = li.dashes.length ? li.dashes[0] : li.keyCol;
    if (li.keyCol > K || (li.keyCol === K && afterDash && li.dashes.length === 0 && !li.empty)) {
      if (li.keyCol === K && afterDash) return null; // a scalar above a list at its own column: not YAML we can place
      continue;
    }
    if (li.keyCol === K && !afterDash) {
      // A sibling key of the same mapping; a dash on its line starts the list item the mapping is.
      if (li.dashes.length) {
        for (let d = li.dashes.length - 1; d >= 0; d--) rev.push(0);
        K = outer;
        afterDash = true;
      }
      continue;
    }
    // keyCol < K (or == K right above a list at the key's column): the parent.
    if (li.key === null) {
      if (li.dashes.length && outer < K) {
        for (let d = li.dashes.length - 1; d >= 0; d--) rev.push(0);
        K = outer;
        afterDash = true;
        continue;
      }
      return null;
    }
    if (!li.empty) {
      if (outer < K && li.dashes.length && li.keyCol <= K) {
        // "- name: x" above a deeper sibling line written under it: that item's mapping.
        for (let d = li.dashes.length - 1; d >= 0; d--) rev.push(0);
        K = outer;
        afterDash = true;
        continue;
      }
      return null;
    }
    rev.push(li.key);
    for (let d = li.dashes.length - 1; d >= 0; d--) rev.push(0);
    K = outer;
    afterDash = li.dashes.length > 0;
    if (K === 0 && !afterDash) break;
  }
  return { path: rev.reverse(), prefix, from: pos - prefix.length };
}

/**
 * siblingKeys are the keys already written in the mapping the key at pos
 * goes into (above and below its line, same indentation, same list item).
 */
export function siblingKeys(text: string, pos: number): Set<string> {
  const lines = text.split("\n");
  const idx = text.slice(0, pos).split("\n").length - 1;
  const cur = lineInfo(lines[idx].replace(/[\w./-]*$/, "") + "x:");
  const out = new Set<string>();
  if (!cur) return out;
  const col = cur.keyCol;
  const outer = (li: LineInfo) => (li.dashes.length ? li.dashes[0] : li.keyCol);
  if (cur.dashes.length === 0)
    for (let n = idx - 1; n >= 0; n--) {
      const li = lineInfo(lines[n]);
      if (!li) continue;
      if (li.keyCol === col && li.key !== null) {
        out.add(li.key);
        if (li.dashes.length) break; // the first key of this list item
      } else if (outer(li) < col) break;
    }
  for (let n = idx + 1; n < lines.length; n++) {
    const li = lineInfo(lines[n]);
    if (!li) continue;
    if (outer(li) < col || (li.keyCol === col && li.dashes.length)) break;
    if (li.keyCol === col && li.key !== null) out.add(li.key);
  }
  return out;
}

/** completeKey lists the fields that may be written at pos, for the document's kind, less those already there. */
export function completeKey(text: string, pos: number, schemas: Schemas | null): { from: number; fields: Field[]; path: PathElem[] } | null {
  if (!schemas) return null;
  const ctx = keyContext(text, pos);
  if (!ctx) return null;
  const { apiVersion, kind } = kindOf(text);
  const root = apiVersion && kind ? schemas.forKind(apiVersion, kind) : undefined;
  if (!root) return null;
  const s = schemas.at(root, ctx.path);
  if (!s) return null;
  const there = siblingKeys(text, pos);
  const fields = schemas.fields(s).filter((f) => f.name.startsWith(ctx.prefix) && !there.has(f.name));
  return { from: ctx.from, fields, path: ctx.path };
}

/**
 * completeValue lists the values a scalar field takes when the cursor is
 * after "key: " and the schema names them (an enum, or a boolean).
 */
export function completeValue(text: string, pos: number, schemas: Schemas | null): { from: number; values: string[]; path: PathElem[] } | null {
  if (!schemas) return null;
  const lineStart = text.lastIndexOf("\n", pos - 1) + 1;
  const m = text.slice(lineStart, pos).match(/^( *(?:- +)*)([\w./-]+):[ \t]+([\w.-]*)$/);
  if (!m) return null;
  const keyEnd = lineStart + m[1].length + m[2].length;
  const ctx = keyContext(text.slice(0, keyEnd), keyEnd);
  if (!ctx) return null;
  const { apiVersion, kind } = kindOf(text);
  const root = apiVersion && kind ? schemas.forKind(apiVersion, kind) : undefined;
  const path = [...ctx.path, m[2]];
  const r = schemas.resolve(schemas.at(root, path));
  const values = r.enum ? r.enum.filter((v) => typeof v === "string" || typeof v === "number").map(String) : r.type === "boolean" ? ["true", "false"] : [];
  if (!root || values.length === 0) return null;
  return { from: pos - m[3].length, values: values.filter((v) => v.startsWith(m[3])), path };
}
