// Schema resolution over the API server's OpenAPI v3 documents (pure, no
// DOM): which schema applies at a path of an object, what fields it has
// (for completion), and what is wrong with a value (for lint). Follows the
// Kubernetes structural-schema rules: $ref and allOf are merged,
// x-kubernetes-preserve-unknown-fields lets any field through,
// x-kubernetes-int-or-string takes an integer or a string, and a schema
// with additionalProperties is a map.

export interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  description?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  allOf?: Schema[];
  oneOf?: Schema[];
  anyOf?: Schema[];
  enum?: unknown[];
  nullable?: boolean;
  default?: unknown;
  required?: string[];
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-embedded-resource"?: boolean;
  "x-kubernetes-group-version-kind"?: { group: string; version: string; kind: string }[];
}

/** An OpenAPI v3 document as /openapi/v3/<path> serves it (only what is read here). */
export interface Spec {
  components?: { schemas?: Record<string, Schema> };
}

/** ANY is the schema of a place where anything goes (preserve-unknown-fields, or no schema known). */
export const ANY: Schema = Object.freeze({ "x-kubernetes-preserve-unknown-fields": true }) as Schema;

export type PathElem = string | number;

export interface Field {
  name: string;
  type: string;
  description: string;
  required: boolean;
}

export interface Issue {
  path: PathElem[];
  kind: "unknown" | "type";
  message: string;
}

const REF_PREFIXES = ["#/components/schemas/", "#/definitions/"];

export class Schemas {
  private defs = new Map<string, Schema>();
  private byGVK = new Map<string, string>();
  private cache = new Map<Schema, Schema>();

  constructor(specs: Spec[] = []) {
    for (const s of specs) this.add(s);
  }

  /** add merges another document's schemas (one per group version). */
  add(spec: Spec) {
    for (const [name, s] of Object.entries(spec.components?.schemas ?? {})) {
      this.defs.set(name, s);
      for (const g of s["x-kubernetes-group-version-kind"] ?? []) this.byGVK.set(gvkKey(g.group, g.version, g.kind), name);
    }
    this.cache.clear();
  }

  /** forKind is the schema of apiVersion/kind (apiVersion "v1" or "group/version"), if a loaded document has it. */
  forKind(apiVersion: string, kind: string): Schema | undefined {
    const [group, version] = apiVersion.includes("/") ? apiVersion.split("/", 2) : ["", apiVersion];
    const name = this.byGVK.get(gvkKey(group, version, kind));
    return name ? this.defs.get(name) : undefined;
  }

  private deref(ref: string): Schema | undefined {
    for (const p of REF_PREFIXES) if (ref.startsWith(p)) return this.defs.get(decodeURIComponent(ref.slice(p.length)).replace(/~1/g, "/").replace(/~0/g, "~"));
    return undefined;
  }

  /**
   * resolve flattens $ref and allOf into one schema: properties are merged,
   * the outermost description wins, extensions are or-ed. An unresolvable
   * $ref becomes ANY (the linter must not invent errors).
   */
  resolve(s: Schema | undefined, seen: Set<string> = new Set()): Schema {
    if (!s || s === ANY) return ANY;
    const hit = this.cache.get(s);
    if (hit) return hit;
    let out: Schema = { ...s };
    delete out.$ref;
    delete out.allOf;
    const parts: Schema[] = [];
    if (s.$ref) {
      if (seen.has(s.$ref)) return ANY; // a cycle: stop here (never for valid specs' property walks)
      const t = this.deref(s.$ref);
      if (!t) return ANY;
      const r = this.resolve(t, new Set([...seen, s.$ref]));
      // A named object type without properties (RawExtension: an
      // embedded object of any kind) takes any field.
      parts.push(r.type === "object" && !r.properties && r.additionalProperties === undefined ? { ...r, "x-kubernetes-preserve-unknown-fields": true } : r);
    }
    for (const a of s.allOf ?? []) parts.push(this.resolve(a, seen));
    for (const p of parts) out = p === ANY ? ANY : merge(out, p);
    // No type, shape or alternatives (apiextensions JSON: any JSON value).
    if (out !== ANY && !out.type && !out.properties && !out.items && out.additionalProperties === undefined && !out.oneOf && !out.anyOf && !out.enum && !out["x-kubernetes-int-or-string"] && !out["x-kubernetes-embedded-resource"])
      out = ANY;
    this.cache.set(s, out);
    return out;
  }

  /** child is the schema of key (string: a field or map key; number: a list item) under s. */
  child(s: Schema, key: PathElem): Schema | undefined {
    const r = this.resolve(s);
    if (r === ANY) return ANY;
    if (typeof key === "number") {
      if (r.items) return r.items;
      return preserves(r) ? ANY : undefined;
    }
    if (r.properties && key in r.properties) return r.properties[key];
    if (r.additionalProperties && typeof r.additionalProperties === "object") return r.additionalProperties;
    if (r.additionalProperties === true || preserves(r)) return ANY;
    // metadata of an embedded resource and the type fields of any object
    if (r["x-kubernetes-embedded-resource"] && (key === "apiVersion" || key === "kind" || key === "metadata")) return ANY;
    return undefined;
  }

  /** at walks path from root; undefined when a step names no field. */
  at(root: Schema | undefined, path: PathElem[]): Schema | undefined {
    let s: Schema | undefined = root;
    for (const k of path) {
      if (!s) return undefined;
      s = this.child(s, k);
    }
    return s;
  }

  /** fields lists what may be written at an object schema (empty for maps and ANY), sorted by name. */
  fields(s: Schema | undefined): Field[] {
    const r = this.resolve(s);
    const req = new Set(r.required ?? []);
    return Object.entries(r.properties ?? {})
      .map(([name, p]) => ({ name, type: this.typeName(p), description: this.resolve(p).description ?? p.description ?? "", required: req.has(name) }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** typeName is a short human type, as kubectl explain writes it: string, integer, []Container, map[string]string, int-or-string. */
  typeName(s: Schema | undefined): string {
    const r = this.resolve(s);
    if (r === ANY) return "any";
    if (r["x-kubernetes-int-or-string"]) return "int-or-string";
    const named = refName(s);
    if (r.type === "array" || r.items) return `[]${this.typeName(r.items)}`;
    if (r.type === "object" || r.properties || r.additionalProperties) {
      if (!r.properties && r.additionalProperties && typeof r.additionalProperties === "object") return `map[string]${this.typeName(r.additionalProperties)}`;
      return named ?? "object";
    }
    const alts = r.oneOf ?? r.anyOf;
    if (!r.type && alts) return alts.map((a) => this.typeName(a)).join("|");
    return r.type ?? named ?? "any";
  }

  /**
   * checkScalar says what is wrong with a scalar value (a string, number,
   * boolean or null as YAML parsed it) where s applies, or "".
   */
  checkScalar(s: Schema | undefined, v: unknown): string {
    const r = this.resolve(s);
    if (r === ANY || v === null || v === undefined) return "";
    const got = jsType(v);
    if (r["x-kubernetes-int-or-string"]) return got === "integer" || got === "string" ? "" : `expected integer or string, got ${got}`;
    const want = this.wantTypes(r);
    if (want.length === 0) return "";
    if (want.some((w) => w === got || (w === "number" && got === "integer"))) {
      if (r.enum && !r.enum.includes(v)) return `unsupported value ${JSON.stringify(v)}: one of ${r.enum.map((e) => JSON.stringify(e)).join(", ")}`;
      return "";
    }
    return `expected ${want.join(" or ")}, got ${got}`;
  }

  /** isContainer reports whether s expects an object or a list (and which), "" for scalars and ANY. */
  container(s: Schema | undefined): "object" | "array" | "" {
    const r = this.resolve(s);
    if (r === ANY) return "";
    if (r.type === "array" || r.items) return "array";
    if (r.type === "object" || r.properties || r.additionalProperties) return "object";
    return "";
  }

  private wantTypes(r: Schema): string[] {
    if (r.type) return [r.type];
    const alts = r.oneOf ?? r.anyOf;
    if (alts) return alts.flatMap((a) => this.wantTypes(this.resolve(a)));
    return [];
  }

  /** validate walks a parsed value (JSON-like) under s and returns unknown fields and wrong types. */
  validate(s: Schema | undefined, v: unknown, path: PathElem[] = []): Issue[] {
    const out: Issue[] = [];
    const walk = (sc: Schema | undefined, x: unknown, p: PathElem[]) => {
      const r = this.resolve(sc);
      if (r === ANY || x === null || x === undefined) return;
      const want = this.container(sc);
      if (Array.isArray(x)) {
        if (want !== "array") {
          out.push({ path: p, kind: "type", message: `expected ${this.typeName(sc)}, got list` });
          return;
        }
        x.forEach((e, i) => walk(this.child(sc!, i), e, [...p, i]));
      } else if (typeof x === "object") {
        if (want !== "object") {
          out.push({ path: p, kind: "type", message: `expected ${this.typeName(sc)}, got object` });
          return;
        }
        for (const [k, e] of Object.entries(x as Record<string, unknown>)) {
          const c = this.child(sc!, k);
          if (c === undefined) out.push({ path: [...p, k], kind: "unknown", message: unknownMessage(k, p) });
          else walk(c, e, [...p, k]);
        }
      } else {
        if (want) {
          out.push({ path: p, kind: "type", message: `expected ${this.typeName(sc)}, got ${jsType(x)}` });
          return;
        }
        const m = this.checkScalar(sc, x);
        if (m) out.push({ path: p, kind: "type", message: m });
      }
    };
    walk(s, v, path);
    return out;
  }
}

/** unknownMessage words an unknown field as the API server's strict field validation does. */
export function unknownMessage(key: string, parent: PathElem[]): string {
  return `unknown field "${[...parent, key].map((e) => (typeof e === "number" ? `[${e}]` : e)).join(".").replace(/\.\[/g, "[")}"`;
}

function preserves(r: Schema) {
  return !!r["x-kubernetes-preserve-unknown-fields"];
}

function refName(s: Schema | undefined): string | undefined {
  const ref = s?.$ref ?? s?.allOf?.find((a) => a.$ref)?.$ref;
  if (!ref) return undefined;
  const n = ref.split("/").pop()!;
  return n.split(".").pop();
}

function gvkKey(g: string, v: string, k: string) {
  return `${g}/${v}/${k}`;
}

function jsType(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "string") return "string";
  if (v instanceof Date) return "string"; // a YAML 1.1 timestamp
  return typeof v;
}

function merge(a: Schema, b: Schema): Schema {
  const out: Schema = { ...b, ...a };
  out.description = a.description ?? b.description;
  if (a.properties || b.properties) out.properties = { ...(b.properties ?? {}), ...(a.properties ?? {}) };
  if (a.required || b.required) out.required = [...new Set([...(b.required ?? []), ...(a.required ?? [])])];
  for (const k of ["x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-embedded-resource"] as const)
    if (a[k] || b[k]) out[k] = true;
  if (!out.type) delete out.type;
  if (out.description === undefined) delete out.description;
  return out;
}
