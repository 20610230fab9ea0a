// Create from YAML (#/create): split a multi-document YAML into its
// documents, and whether the user may create anything (the Create button).
import type { Resource, Rule } from "./api";
import { objectHref } from "./route";

export interface Doc {
  /** index is the document's position (1-based) among all documents, empty ones included. */
  index: number;
  text: string;
  /** label is kind/name as written (best effort, for the result list). */
  label: string;
}

/** splitDocs splits on "---" lines (YAML document separators); documents holding only comments or blanks are dropped. */
export function splitDocs(yaml: string): Doc[] {
  const out: Doc[] = [];
  const parts = yaml.replace(/\r\n/g, "\n").split(/^---[ \t]*(?:#.*)?$/m);
  parts.forEach((text, i) => {
    const meaningful = text.split("\n").some((l) => l.trim() !== "" && !l.trim().startsWith("#") && l.trim() !== "..." );
    if (!meaningful) return;
    out.push({ index: i + 1, text: text.replace(/^\n/, ""), label: labelOf(text) });
  });
  return out;
}

function labelOf(text: string): string {
  const kind = /^kind:\s*["']?([\w.-]+)/m.exec(text)?.[1] ?? "?";
  const name = /^\s+name:\s*["']?([\w.:-]+)/m.exec(text)?.[1] ?? /^metadata:\s*\{[^}]*name:\s*["']?([\w.:-]+)/m.exec(text)?.[1] ?? "?";
  return `${kind} ${name}`;
}

/** REVIEW_GROUPS are the groups every user may create in (self access reviews), which do not count as "may create". */
const REVIEW_GROUPS = new Set(["authorization.k8s.io", "authentication.k8s.io"]);

/** mayCreate: the rules grant create on some resource other than the self reviews. */
export function mayCreate(rules: Rule[]): boolean {
  return rules.some(
    (r) =>
      (r.verbs.includes("*") || r.verbs.includes("create")) &&
      (r.resources ?? []).length > 0 &&
      (r.apiGroups ?? []).some((g) => g === "*" || !REVIEW_GROUPS.has(g)),
  );
}

/** createdHref links a created object (the API's answer) through discovery's kinds. */
export function createdHref(obj: { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string } }, resources: Resource[]): string | null {
  const [group, version] = (obj.apiVersion ?? "").includes("/") ? (obj.apiVersion ?? "").split("/") : ["", obj.apiVersion ?? ""];
  const r = resources.find((x) => x.group === group && x.version === version && x.kind === obj.kind) ?? resources.find((x) => x.group === group && x.kind === obj.kind);
  if (!r || !obj.metadata?.name) return null;
  return objectHref(r.group, version || r.version, r.resource, r.namespaced ? (obj.metadata.namespace ?? "") : "", obj.metadata.name);
}
