// The federation page (issue #14): member clusters with their health,
// live, and per propagation policy the resources it places with the
// member clusters and replica counts of each (from ResourceBindings).
// Everything is read from the host, as the user, through subscriptions.
import type { Live } from "./live";
import type { Resource } from "./api";
import { useLive, useNow } from "./hooks";
import { objectHref } from "./route";
import { FED_GROUP, FED_VERSION, memberRow, policyViews, resourcePath, type MemberRow, type PolicyView } from "./federation";

const all = { offset: 0, limit: 500 };
const fedQuery = (resource: string) => ({ group: FED_GROUP, version: FED_VERSION, resource, namespace: "", page: all });

function Health({ m }: { m: MemberRow }) {
  const cls = m.ready === "True" ? "ok" : m.ready === "False" ? "bad" : "unknown";
  return (
    <span className={`health ${cls}`} title={m.message} data-testid={`health-${m.name}`}>
      {m.ready === "True" ? "Ready" : m.ready === "False" ? "NotReady" : "Unknown"}
      {m.reason && <small> {m.reason}</small>}
    </span>
  );
}

export function MemberTable({ rows, current, onSwitch }: { rows: MemberRow[]; current: string; onSwitch?: (name: string) => void }) {
  if (rows.length === 0) return <p className="note">No member clusters yet: create a MemberCluster and its credentials Secret.</p>;
  return (
    <div className="scroll-x">
      <table className="members" data-testid="members">
        <thead>
          <tr>
            <th>Name</th>
            <th>
              <span className="visually-hidden">Cluster context</span>
            </th>
            <th>Health</th>
            <th>Endpoint</th>
            <th>Zone / region</th>
            <th>Version</th>
            <th>Nodes</th>
            <th>Allocatable</th>
            <th>Allocated</th>
            <th>Heartbeat</th>
            <th>Taints</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((m) => (
            <tr key={m.name} data-testid={`member-${m.name}`}>
              <td>
                <a href={objectHref(FED_GROUP, FED_VERSION, "memberclusters", "", m.name)}>{m.name}</a>
              </td>
              <td>
                {onSwitch &&
                  (current === m.name ? (
                    <em>current</em>
                  ) : (
                    <button onClick={() => onSwitch(m.name)} aria-label={`switch to ${m.name}`}>
                      Switch to
                    </button>
                  ))}
              </td>
              <td>
                <Health m={m} />
                {m.ready !== "True" && m.message && <div className="note">{m.message}</div>}
              </td>
              <td className="mono">{m.endpoint}</td>
              <td>{[m.zone, m.region].filter(Boolean).join(" / ") || "—"}</td>
              <td>{m.version || "—"}</td>
              <td>{m.nodes}</td>
              <td>{m.allocatable}</td>
              <td>{m.allocated}</td>
              <td>{m.heartbeat}</td>
              <td>
                {m.taints.length === 0
                  ? "—"
                  : m.taints.map((t) => (
                      <span key={t} className="chip">
                        {t}
                      </span>
                    ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function PolicyPlacement({ p, resources }: { p: PolicyView; resources: Resource[] }) {
  const policyHref = objectHref(FED_GROUP, FED_VERSION, p.kind === "PropagationPolicy" ? "propagationpolicies" : "clusterpropagationpolicies", p.namespace, p.name);
  const hrefOf = (apiVersion: string, kind: string, ns: string, name: string) => {
    const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
    const r = resources.find((x) => x.group === group && x.kind === kind) ?? { ...resourcePath(apiVersion, kind) };
    return objectHref(group, r.version ?? version, r.resource, ns, name);
  };
  return (
    <section className="policy" data-testid={`policy-${p.namespace ? p.namespace + "/" : ""}${p.name}`}>
      <h3>
        <a href={policyHref}>{p.name}</a> <small>{p.kind}{p.namespace && ` in ${p.namespace}`}</small>{" "}
        <span className={`health ${p.matched === "True" ? "ok" : "unknown"}`} title={p.matchedMessage}>
          {p.matched === "True" ? "Matched" : p.matchedReason || "not matched"}
        </span>
      </h3>
      <p className="note">
        {p.replicaScheduling}
        {p.clusterNames.length > 0 && ` · clusters ${p.clusterNames.join(", ")}`}
        {p.matchedMessage && ` · ${p.matchedMessage}`}
      </p>
      {p.resources.length === 0 ? (
        <p className="note">Places nothing.</p>
      ) : (
        <table className="placement">
          <thead>
            <tr>
              <th>Resource</th>
              <th>Member clusters</th>
              <th>Binding</th>
            </tr>
          </thead>
          <tbody>
            {p.resources.map((r) => (
              <tr key={`${r.namespace}/${r.kind}/${r.name}`} data-testid={`placed-${r.kind}-${r.name}`}>
                <td>
                  {r.kind} <a href={hrefOf(r.apiVersion, r.kind, r.namespace, r.name)}>{r.namespace ? `${r.namespace}/${r.name}` : r.name}</a>
                  {r.conflict && <div className="error">Conflict: {r.conflict}</div>}
                </td>
                <td>
                  {r.clusters.map((c) => (
                    <span key={c.cluster} className={`chip ${c.applied ? "" : "warn"}`} title={c.message} data-testid={`placement-${r.name}-${c.cluster}`}>
                      {c.cluster}
                      {c.replicas !== undefined && `: ${c.ready !== undefined ? `${c.ready}/` : ""}${c.replicas}`}
                      {!c.applied && ` (${c.reason || "not applied"})`}
                    </span>
                  ))}
                </td>
                <td>
                  <a href={objectHref(FED_GROUP, FED_VERSION, r.bindingNamespace ? "resourcebindings" : "clusterresourcebindings", r.bindingNamespace, r.binding)}>{r.binding}</a>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** Federation is the page; live reads the host. */
export function Federation({ live, resources, current, onSwitch }: { live: Live | null; resources: Resource[]; current: string; onSwitch: (name: string) => void }) {
  const now = useNow();
  const members = useLive(live, fedQuery("memberclusters"));
  const policies = useLive(live, fedQuery("propagationpolicies"));
  const cpolicies = useLive(live, fedQuery("clusterpropagationpolicies"));
  const nsBindings = useLive(live, fedQuery("resourcebindings"));
  const clusterBindings = useLive(live, fedQuery("clusterresourcebindings"));
  const bindings = { rows: [...nsBindings.rows, ...clusterBindings.rows], error: nsBindings.error ?? clusterBindings.error };
  const rows = members.rows.map((m) => memberRow(m, now));
  const views = policyViews(policies.rows, cpolicies.rows, bindings.rows);
  return (
    <div className="federation">
      <h2>Federation</h2>
      {current && <p className="note">This page shows the host's federation objects; the links open objects of the current cluster ({current}), so switch back to the host to follow them.</p>}
      <h3>Member clusters</h3>
      {members.error ? <p className="error">{members.error}</p> : members.loaded ? <MemberTable rows={rows} current={current} onSwitch={onSwitch} /> : <p>Loading…</p>}
      <h3>Placement by policy</h3>
      {[policies, cpolicies, bindings].map((s) => s.error).filter(Boolean).map((e) => (
        <p key={e} className="error">
          {e}
        </p>
      ))}
      {views.length === 0 && policies.loaded && cpolicies.loaded && <p className="note">No propagation policies.</p>}
      {views.map((p) => (
        <PolicyPlacement key={`${p.kind}/${p.namespace}/${p.name}`} p={p} resources={resources} />
      ))}
    </div>
  );
}
