// Metrics feed data (backend/metrics.go): series → chart columns, top-N,
// states and units. Pure functions, tested in metrics.test.ts.

export type MetricsKind = "cluster" | "node" | "namespace" | "workload" | "pod" | "top" | "volumes";

export interface MetricsQuery {
  kind: MetricsKind;
  namespace?: string;
  name?: string;
  limit?: number;
}

export interface Series {
  name: string;
  t: number[]; // unix seconds
  cpu: number[]; // cores
  memory: number[]; // bytes
}

export interface Usage {
  cpu: number;
  memory: number;
  time: number; // unix ms
  stale: boolean;
  lastError?: string;
}

export interface PodUsage {
  namespace: string;
  name: string;
  cpu: number;
  memory: number;
  stale?: boolean;
}

export interface VolumeUsage {
  used: number;
  capacity: number;
  available: number;
  pod: string;
  time: number;
  stale: boolean;
}

export interface MetricsMsg {
  type: "metrics";
  id: string;
  available: boolean;
  message?: string;
  interval?: number; // seconds
  time?: number; // unix ms of the latest round
  series: Series[];
  latest?: Usage;
  top?: { cpu: PodUsage[]; memory: PodUsage[] };
  volumes?: Record<string, VolumeUsage>;
}

/** ChartData is uPlot's aligned data: x (unix s) then one column per line; null breaks a line. */
export type ChartData = [number[], ...(number | null)[][]];

/**
 * chartData aligns the series on the union of their times, for one field.
 * A round missing from a series is null there; where every series missed
 * rounds (a stale node, a restart) a null row is put in the gap so the
 * chart breaks the line instead of drawing across it, and never a zero.
 */
export function chartData(series: Series[], field: "cpu" | "memory", interval = 15): ChartData {
  const times = new Set<number>();
  for (const s of series) for (const t of s.t) times.add(t);
  const xs = [...times].sort((a, b) => a - b);
  const withGaps: number[] = [];
  for (let i = 0; i < xs.length; i++) {
    if (i > 0 && xs[i] - xs[i - 1] > interval * 1.5) withGaps.push(xs[i - 1] + interval);
    withGaps.push(xs[i]);
  }
  const cols = series.map((s) => {
    const at = new Map<number, number>();
    s.t.forEach((t, i) => at.set(t, s[field][i]));
    return withGaps.map((t) => at.get(t) ?? null);
  });
  return [withGaps, ...cols];
}

export type MetricsState = "loading" | "unavailable" | "forbidden" | "empty" | "stale" | "ok";

/** metricsState says what a chart panel shows. */
export function metricsState(m: MetricsMsg | undefined, error?: string): MetricsState {
  if (error) return /cannot|forbidden|403/i.test(error) ? "forbidden" : "unavailable";
  if (!m) return "loading";
  if (!m.available) return "unavailable";
  if (!m.series.some((s) => s.t.length > 0) && !m.latest) return "empty";
  if (m.latest?.stale) return "stale";
  return "ok";
}

/** topN ranks pods by a field, biggest first (name breaks ties), at most n. */
export function topN(pods: PodUsage[], by: "cpu" | "memory", n: number): PodUsage[] {
  return [...pods]
    .sort((a, b) => b[by] - a[by] || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))
    .slice(0, Math.max(0, n));
}

/** fmtCores formats cores as kubectl top does: millicores below 10 cores. */
export function fmtCores(c: number | null | undefined): string {
  if (c == null || Number.isNaN(c)) return "—";
  if (c >= 10) return `${c.toFixed(1)} cores`;
  return `${Math.round(c * 1000)}m`;
}

const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** fmtBytes formats bytes in binary units. */
export function fmtBytes(b: number | null | undefined): string {
  if (b == null || Number.isNaN(b)) return "—";
  let i = 0;
  let v = b;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** lastValue is a series' newest value (undefined if empty). */
export function lastValue(s: Series | undefined, field: "cpu" | "memory"): number | undefined {
  if (!s || s[field].length === 0) return undefined;
  return s[field][s[field].length - 1];
}

/** describe is a chart's text alternative: what, how long, latest, range. */
export function describe(title: string, s: Series | undefined, field: "cpu" | "memory"): string {
  const fmt = field === "cpu" ? fmtCores : fmtBytes;
  if (!s || s.t.length === 0) return `${title}: no data yet`;
  const vals = s[field];
  const mins = Math.max(1, Math.round((s.t[s.t.length - 1] - s.t[0]) / 60));
  return `${title} over the last ${mins} min: latest ${fmt(vals[vals.length - 1])}, min ${fmt(Math.min(...vals))}, max ${fmt(Math.max(...vals))}`;
}
