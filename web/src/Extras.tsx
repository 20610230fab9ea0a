// Sections an object's page adds for some kinds: CPU and memory charts
// (nodes, namespaces, workloads, pods) and storage binding and usage
// (claims, volumes, classes).
import type { Live } from "./live";
import type { Route } from "./route";
import { MetricsPanel, workloadKinds } from "./Metrics";
import { StorageDetail } from "./Storage";
import type { MetricsQuery } from "./metrics";

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type ObjRoute = Extract<Route, { view: "object" }>;

/** metricsQueryFor is the metrics feed of an object's page (null: none). */
export function metricsQueryFor(resource: string, ns: string, name: string, obj?: Any): { query: MetricsQuery; title: string } | null {
  if (resource === "nodes") return { query: { kind: "node", name }, title: `Node ${name}` };
  if (resource === "pods") return { query: { kind: "pod", namespace: ns, name }, title: `Pod ${name}` };
  if (resource === "namespaces") return { query: { kind: "namespace", namespace: name }, title: `Namespace ${name}` };
  const kind = workloadKinds[resource];
  if (!kind) return null;
  // The history counts a Deployment's ReplicaSets under the Deployment.
  const owner = (obj?.metadata?.ownerReferences ?? []).find((o: Any) => o.controller && o.kind === "Deployment");
  if (kind === "ReplicaSet" && owner && obj?.metadata?.labels?.["pod-template-hash"])
    return { query: { kind: "workload", namespace: ns, name: `Deployment/${owner.name}` }, title: `Deployment ${owner.name} (all its ReplicaSets)` };
  return { query: { kind: "workload", namespace: ns, name: `${kind}/${name}` }, title: `${kind} ${name}` };
}

export function ObjectExtras({ live, route, obj }: { live: Live | null; route: ObjRoute; obj: Any }) {
  const m = metricsQueryFor(route.resource, route.ns, route.name, obj);
  return (
    <>
      {m && <MetricsPanel live={live} query={m.query} title={m.title} />}
      <StorageDetail live={live} resource={route.resource} obj={obj} />
    </>
  );
}
