// Log search state and the pure logic behind LogSearch.tsx: the URL
// (every search state is a deep link), the backend request built from it,
// histogram bucketing, highlight splitting, export and the links that open
// the page pre-filtered from pods and workloads.
//
//   #/logs?q=<query_string>&range=15m|1h|24h|custom[&from=<ms>&to=<ms>]&f=<field>:<value>...[&tail=1]

export const RANGES: Record<string, number> = { "15m": 15 * 60_000, "1h": 3_600_000, "24h": 86_400_000 };

/** The metadata fields the page counts values of and filters on. */
export const FACETS = ["namespace", "pod", "container", "host", "stream", "level"] as const;

export interface Filter {
  field: string; // namespace, pod, container, host, stream, level, podId or label.<key>
  value: string;
}

export interface SearchState {
  q: string;
  range: string; // a key of RANGES or "custom"
  from?: number; // epoch ms, custom only
  to?: number;
  filters: Filter[];
  tail: boolean;
}

export const emptyState = (): SearchState => ({ q: "", range: "15m", filters: [], tail: false });

/** parseState reads the state from the hash's query part. */
export function parseState(query: string | URLSearchParams): SearchState {
  const p = typeof query === "string" ? new URLSearchParams(query.replace(/^[#?]/, "")) : query;
  const s = emptyState();
  s.q = p.get("q") ?? "";
  const range = p.get("range") ?? "15m";
  const from = Number(p.get("from"));
  const to = Number(p.get("to"));
  if (range === "custom" && Number.isFinite(from) && Number.isFinite(to) && from > 0 && to > from) {
    s.range = "custom";
    s.from = from;
    s.to = to;
  } else if (range in RANGES) {
    s.range = range;
  }
  for (const f of p.getAll("f")) {
    const i = f.indexOf(":");
    if (i > 0 && i < f.length - 1) s.filters.push({ field: f.slice(0, i), value: f.slice(i + 1) });
  }
  s.tail = p.get("tail") === "1" && s.range !== "custom";
  return s;
}

/** stateQuery writes the state as the hash's query (stable order). */
export function stateQuery(s: SearchState): string {
  const p = new URLSearchParams();
  if (s.q) p.set("q", s.q);
  p.set("range", s.range);
  if (s.range === "custom" && s.from !== undefined && s.to !== undefined) {
    p.set("from", String(s.from));
    p.set("to", String(s.to));
  }
  for (const f of s.filters) p.append("f", `${f.field}:${f.value}`);
  if (s.tail) p.set("tail", "1");
  return p.toString();
}

export const searchHref = (s: SearchState): string => `#/logs?${stateQuery(s)}`;

/** bounds is the state's time range at now. */
export function bounds(s: SearchState, now: number): { from: number; to: number } {
  if (s.range === "custom" && s.from !== undefined && s.to !== undefined) return { from: s.from, to: s.to };
  return { from: now - (RANGES[s.range] ?? RANGES["15m"]), to: now };
}

/** requestParams is the backend request (/api/logsearch) for the state. */
export function requestParams(s: SearchState, now: number, extra: Record<string, string> = {}): URLSearchParams {
  const { from, to } = bounds(s, now);
  const p = new URLSearchParams();
  if (s.q.trim()) p.set("q", s.q.trim());
  p.set("from", String(from));
  p.set("to", String(to));
  for (const f of s.filters) p.append("f", `${f.field}:${f.value}`);
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  return p;
}

export const hasFilter = (s: SearchState, f: Filter) => s.filters.some((x) => x.field === f.field && x.value === f.value);

/** toggleFilter adds the filter, or removes it when present. */
export function toggleFilter(s: SearchState, f: Filter): SearchState {
  const filters = hasFilter(s, f) ? s.filters.filter((x) => !(x.field === f.field && x.value === f.value)) : [...s.filters, f];
  return { ...s, filters };
}

/** describe is a filter as a person reads it (the backend ORs values of one field, ANDs fields). */
export function describe(filters: Filter[]): string {
  const by = new Map<string, string[]>();
  for (const f of filters) by.set(f.field, [...(by.get(f.field) ?? []), f.value]);
  return [...by].map(([k, vs]) => (vs.length === 1 ? `${k}=${vs[0]}` : `${k} in (${vs.join(", ")})`)).join(" and ");
}

export interface Bucket {
  key: number; // bucket start, epoch ms
  count: number;
}

/**
 * fillBuckets returns one bucket per interval from from to to (aligned
 * to the interval as the store's date_histogram is), with the counts of
 * the given buckets and of extra timestamps (lines the live tail added).
 */
export function fillBuckets(buckets: Bucket[], interval: number, from: number, to: number, extra: number[] = []): Bucket[] {
  if (interval <= 0 || to < from) return [];
  const first = Math.floor(from / interval) * interval;
  const n = Math.min(10_000, Math.floor((to - first) / interval) + 1);
  const out: Bucket[] = Array.from({ length: n }, (_, i) => ({ key: first + i * interval, count: 0 }));
  const add = (t: number, c: number) => {
    const i = Math.floor((t - first) / interval);
    if (i >= 0 && i < n) out[i].count += c;
  };
  for (const b of buckets) add(b.key, b.count);
  for (const t of extra) add(t, 1);
  return out;
}

export interface Bar {
  x: number;
  y: number;
  w: number;
  h: number;
  bucket: Bucket;
}

/** bars lays buckets out as SVG rectangles in a width × height box. */
export function bars(buckets: Bucket[], width: number, height: number): Bar[] {
  if (buckets.length === 0) return [];
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const slot = width / buckets.length;
  const gap = slot > 4 ? 1 : 0;
  return buckets.map((b, i) => {
    const h = b.count === 0 ? 0 : Math.max(1, (b.count / max) * height);
    return { x: i * slot, y: height - h, w: Math.max(0.5, slot - gap), h, bucket: b };
  });
}

export const HL_PRE = "\ue000";
export const HL_POST = "\ue001";

export interface Segment {
  text: string;
  hit: boolean;
}

/** splitHighlight cuts a highlighted message (matched words between U+E000 and U+E001) into segments. */
export function splitHighlight(s: string): Segment[] {
  const out: Segment[] = [];
  let hit = false;
  let cur = "";
  for (const ch of s) {
    if (ch === HL_PRE || ch === HL_POST) {
      if (cur) out.push({ text: cur, hit });
      cur = "";
      hit = ch === HL_PRE;
      continue;
    }
    cur += ch;
  }
  if (cur) out.push({ text: cur, hit });
  return out;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;

export interface Hit {
  id: string;
  index: string;
  ts: number;
  source: Doc;
  highlight?: string;
}

export const k8s = (h: Hit): Doc => h.source?.kubernetes ?? {};

/** mergeNewer puts tail lines (any order) in front of the newest-first list, without duplicates, keeping at most max lines. */
export function mergeNewer(list: Hit[], incoming: Hit[], max: number): Hit[] {
  const seen = new Set(list.map((h) => h.id));
  const fresh = incoming.filter((h) => !seen.has(h.id) && (seen.add(h.id), true));
  fresh.sort((a, b) => b.ts - a.ts);
  return [...fresh, ...list].slice(0, max);
}

const csvCell = (v: unknown): string => {
  const s = v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

export const CSV_COLUMNS = ["@timestamp", "namespace", "pod", "container", "host", "stream", "level", "message"];

/** toCSV exports hits as CSV (RFC 4180 quoting) with the metadata columns. */
export function toCSV(hits: Hit[]): string {
  const rows = [CSV_COLUMNS.join(",")];
  for (const h of hits) {
    const k = k8s(h);
    rows.push(
      [h.source["@timestamp"] ?? new Date(h.ts).toISOString(), k.namespace_name, k.pod_name, k.container_name, k.host, h.source.stream, h.source.level, h.source.message]
        .map(csvCell)
        .join(","),
    );
  }
  return rows.join("\r\n") + "\r\n";
}

/** toNDJSON exports hits as one document (_source) per line. */
export const toNDJSON = (hits: Hit[]): string => hits.map((h) => JSON.stringify(h.source) + "\n").join("");

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/**
 * linkFilters is what the "Search logs" link of an object pre-filters: a
 * pod by namespace and pod name; a workload (Deployment, StatefulSet,
 * DaemonSet, Job, ReplicaSet) by namespace and its selector's matchLabels,
 * which the shipper records as kubernetes.labels.<key>, so every pod the
 * workload selects (all its ReplicaSets too) is found, including pods
 * that are gone. null when the object has no usable selector.
 */
export function linkFilters(resource: string, obj: Obj): Filter[] | null {
  const ns = obj?.metadata?.namespace ?? "";
  const base: Filter[] = ns ? [{ field: "namespace", value: ns }] : [];
  if (resource === "pods") return [...base, { field: "pod", value: obj.metadata.name }];
  if (!WORKLOADS.includes(resource)) return null;
  const ml: Record<string, string> = obj?.spec?.selector?.matchLabels ?? {};
  const keys = Object.keys(ml).sort();
  if (keys.length === 0) return null;
  return [...base, ...keys.map((k) => ({ field: `label.${k}`, value: String(ml[k]) }))];
}

export const WORKLOADS = ["deployments", "statefulsets", "daemonsets", "jobs", "replicasets"];

/** searchLink is the "Search logs" href for an object, or null. */
export function searchLink(resource: string, obj: Obj, range = "1h"): string | null {
  const filters = linkFilters(resource, obj);
  return filters ? searchHref({ q: "", range, filters, tail: false }) : null;
}
