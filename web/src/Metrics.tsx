// CPU and memory charts and top-N pods, live from the backend's metrics
// feed (one message per scrape round). The chart library is a lazy chunk.
import { lazy, Suspense, useMemo } from "react";
import type { Live } from "./live";
import { useMetrics } from "./hooks";
import { chartData, describe, fmtBytes, fmtCores, metricsState, topN, type MetricsQuery, type PodUsage } from "./metrics";
import { objectHref } from "./route";

const Chart = lazy(() => import("./Chart"));

/** workloadKinds maps a workload resource to the kind the metrics history uses. */
export const workloadKinds: Record<string, string> = {
  deployments: "Deployment",
  statefulsets: "StatefulSet",
  daemonsets: "DaemonSet",
  replicasets: "ReplicaSet",
  jobs: "Job",
};

function Notice({ state, msg, error, interval }: { state: string; msg?: string; error?: string; interval?: number }) {
  switch (state) {
    case "loading":
      return <p className="note">Loading metrics…</p>;
    case "unavailable":
      return (
        <p className="note" role="status" data-metrics="unavailable">
          {error || msg || "Metrics history unavailable."}
        </p>
      );
    case "forbidden":
      return (
        <p className="note" role="status" data-metrics="forbidden">
          No access to metrics here: {error}
        </p>
      );
    case "empty":
      return (
        <p className="note" role="status" data-metrics="empty">
          No data yet: no scrape round has reported this object (rounds every {interval ?? 15} s). Charts appear once its node's agent reports it.
        </p>
      );
  }
  return null;
}

/** MetricsPanel shows CPU and memory history of one object, live. */
export function MetricsPanel({ live, query, title = "Usage" }: { live: Live | null; query: MetricsQuery; title?: string }) {
  const { msg, error } = useMetrics(live, query);
  const state = metricsState(msg, error);
  const series = msg?.series ?? [];
  const labels = series.map((s, i) => (i === 0 ? `${s.name} (total)` : s.name));
  const interval = msg?.interval ?? 15;
  const cpu = useMemo(() => chartData(series, "cpu", interval), [msg]); // eslint-disable-line react-hooks/exhaustive-deps
  const mem = useMemo(() => chartData(series, "memory", interval), [msg]); // eslint-disable-line react-hooks/exhaustive-deps
  const hasPoints = series.some((s) => s.t.length > 0);
  const latest = msg?.latest;
  return (
    <section className="metrics" aria-label={`${title}: CPU and memory`} data-metrics-state={state}>
      <h3>
        {title}
        {latest && (
          <small>
            {" "}
            now {fmtCores(latest.cpu)} CPU, {fmtBytes(latest.memory)} memory
          </small>
        )}
      </h3>
      {state === "stale" && latest && (
        <p className="warn" role="status" data-metrics="stale">
          Stale: the node's latest scrape failed{latest.lastError ? ` (${latest.lastError})` : ""}; these are the last good values, from{" "}
          {new Date(latest.time).toLocaleTimeString()}. The chart has a gap, not a zero.
        </p>
      )}
      {["loading", "unavailable", "forbidden"].includes(state) ? (
        <Notice state={state} msg={msg?.message} error={error} />
      ) : (
        !hasPoints && <Notice state="empty" interval={interval} />
      )}
      {hasPoints && (state === "ok" || state === "stale") && (
        <Suspense fallback={<p className="note">Loading chart…</p>}>
          <div className="charts">
            <Chart title="CPU (cores)" description={describe(`${title} CPU`, series[0], "cpu")} labels={labels} data={cpu} format={fmtCores} />
            <Chart title="Memory (working set)" description={describe(`${title} memory`, series[0], "memory")} labels={labels} data={mem} format={fmtBytes} />
          </div>
        </Suspense>
      )}
    </section>
  );
}

function TopTable({ title, rows, by }: { title: string; rows: PodUsage[]; by: "cpu" | "memory" }) {
  return (
    <table className="plain top" aria-label={title}>
      <caption>{title}</caption>
      <thead>
        <tr>
          <th scope="col">Pod</th>
          <th scope="col">CPU</th>
          <th scope="col">Memory</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((p) => (
          <tr key={`${p.namespace}/${p.name}`} className={p.stale ? "stale" : ""}>
            <td>
              <a href={objectHref("", "v1", "pods", p.namespace, p.name)}>
                {p.namespace}/{p.name}
              </a>
              {p.stale && <small className="warn"> stale</small>}
            </td>
            <td className={by === "cpu" ? "strong" : ""}>{fmtCores(p.cpu)}</td>
            <td className={by === "memory" ? "strong" : ""}>{fmtBytes(p.memory)}</td>
          </tr>
        ))}
        {rows.length === 0 && (
          <tr>
            <td colSpan={3}>No pods reported yet.</td>
          </tr>
        )}
      </tbody>
    </table>
  );
}

/** TopPods lists the pods using the most CPU and memory, live. */
export function TopPods({ live, ns, n = 10 }: { live: Live | null; ns: string; n?: number }) {
  const { msg, error } = useMetrics(live, { kind: "top", namespace: ns, limit: n });
  const state = metricsState(msg, error);
  if (["loading", "unavailable", "forbidden"].includes(state)) return <Notice state={state} msg={msg?.message} error={error} />;
  return (
    <div className="tops" data-testid="top-pods">
      <TopTable title={`Top ${n} pods by CPU`} rows={topN(msg?.top?.cpu ?? [], "cpu", n)} by="cpu" />
      <TopTable title={`Top ${n} pods by memory`} rows={topN(msg?.top?.memory ?? [], "memory", n)} by="memory" />
    </div>
  );
}
