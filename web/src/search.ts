// The search palette's data: GET /api/search (the backend ranks object
// names fuzzily over its shared caches, only in kinds the user may list)
// and the custom kinds the user opened in this tab, which are searched
// too (the backend's SearchKinds are the common ones).
import type { Route } from "./route";
import { objectHref } from "./route";

export interface SearchResult {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
  namespace?: string;
  name: string;
  score: number;
}

export interface SearchResponse {
  results: SearchResult[];
  matched: number;
  searched: string[];
  forbidden: string[];
  pending: string[];
  tookMs: number;
}

/** COMMON are the kinds the backend always searches (backend.SearchKinds). */
export const COMMON = new Set([
  "core/v1/pods",
  "apps/v1/deployments",
  "core/v1/services",
  "core/v1/nodes",
  "core/v1/namespaces",
  "core/v1/configmaps",
  "core/v1/secrets",
  "apps/v1/statefulsets",
  "apps/v1/daemonsets",
  "batch/v1/jobs",
  "batch/v1/cronjobs",
  "networking.k8s.io/v1/ingresses",
  "core/v1/persistentvolumeclaims",
]);

export const MAX_EXTRA_KINDS = 10;

/** kindKey is group/version/resource with "core" for the core group. */
export const kindKey = (group: string, version: string, resource: string) => `${group || "core"}/${version}/${resource}`;

/** rememberKind adds the route's kind to the extra kinds (most recent first, at most MAX_EXTRA_KINDS) unless it is a common one. */
export function rememberKind(kinds: string[], route: Route): string[] {
  if (route.view !== "list" && route.view !== "object") return kinds;
  const k = kindKey(route.group, route.version, route.resource);
  if (COMMON.has(k)) return kinds;
  return [k, ...kinds.filter((x) => x !== k)].slice(0, MAX_EXTRA_KINDS);
}

export function searchURL(q: string, ns: string, kinds: string[], limit = 20): string {
  const p = new URLSearchParams({ q: q.trim(), ns, limit: String(limit) });
  if (kinds.length) p.set("kinds", kinds.join(","));
  return `/api/search?${p}`;
}

export const resultHref = (r: SearchResult) => objectHref(r.group, r.version, r.resource, r.namespaced ? (r.namespace ?? "") : "", r.name);

/** moveSelection moves the palette's selection, wrapping around. */
export function moveSelection(cur: number, delta: number, n: number): number {
  if (n <= 0) return 0;
  return (((cur + delta) % n) + n) % n;
}

/** searchNote says what was not searched (kinds the user may not list, kinds still loading). */
export function searchNote(r: SearchResponse): string {
  const parts: string[] = [];
  if (r.matched > r.results.length) parts.push(`best ${r.results.length} of ${r.matched} matches`);
  if (r.forbidden.length) parts.push(`not searched (no list permission): ${r.forbidden.join(", ")}`);
  if (r.pending.length) parts.push(`still loading: ${r.pending.join(", ")}`);
  return parts.join("; ");
}
