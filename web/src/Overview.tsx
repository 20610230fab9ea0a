import type { Live } from "./live";
import { useLive, useNow } from "./hooks";
import { columnsFor, age } from "./columns";
import { objectHref } from "./route";
import { MetricsPanel, TopPods } from "./Metrics";

export function Overview({ live, ns }: { live: Live | null; ns: string }) {
  const now = useNow();
  const nodes = useLive(live, { group: "", version: "v1", resource: "nodes", namespace: "", page: { offset: 0, limit: 100 } });
  const warnings = useLive(live, {
    group: "",
    version: "v1",
    resource: "events",
    namespace: ns,
    filter: { fields: { type: "Warning" } },
    sort: { by: "lastTimestamp", desc: true },
    page: { offset: 0, limit: 20 },
  });
  const nodeCols = columnsFor("nodes", false, false);
  return (
    <section>
      <h2>Cluster overview</h2>
      <MetricsPanel
        live={live}
        query={ns ? { kind: "namespace", namespace: ns } : { kind: "cluster" }}
        title={ns ? `Namespace ${ns}` : "Cluster (all nodes)"}
      />
      <TopPods live={live} ns={ns} />
      <h3>
        Nodes <small>({nodes.total})</small>
      </h3>
      {nodes.error ? (
        <p className="error">{nodes.error}</p>
      ) : (
        <table className="plain">
          <thead>
            <tr>{nodeCols.map((c) => <th key={c.title}>{c.title}</th>)}</tr>
          </thead>
          <tbody>
            {nodes.rows.map((n) => (
              <tr key={n.metadata.name}>
                {nodeCols.map((c, i) => (
                  <td key={c.title}>{i === 0 ? <a href={objectHref("", "v1", "nodes", "", n.metadata.name)}>{c.get(n, now)}</a> : c.get(n, now)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>
        Recent warnings <small>({warnings.total})</small>
      </h3>
      {warnings.error && <p className="error">{warnings.error}</p>}
      <ul className="events">
        {warnings.rows.map((e) => {
          const ev = e as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
          return (
            <li key={`${e.metadata.namespace}/${e.metadata.name}`}>
              <span className="warn">{ev.reason}</span> {ev.involvedObject?.kind}/{ev.involvedObject?.name}: {ev.message}{" "}
              <small>{age(ev.lastTimestamp ?? ev.eventTime ?? e.metadata.creationTimestamp, now)} ago</small>
            </li>
          );
        })}
        {warnings.loaded && warnings.rows.length === 0 && !warnings.error && <li>No warnings.</li>}
      </ul>
    </section>
  );
}
