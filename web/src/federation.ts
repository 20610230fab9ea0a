// The federation page's data (issue #14): MemberClusters with their
// health, and per policy the resources it places and where, from the
// federation add-on's ResourceBindings (federation.skiff.io/v1alpha1).

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const FED_GROUP = "federation.skiff.io";
export const FED_VERSION = "v1alpha1";

export interface MemberRow {
  name: string;
  endpoint: string;
  zone: string;
  region: string;
  /** ready is "True", "False" or "Unknown" (no condition yet). */
  ready: string;
  reason: string;
  message: string;
  version: string;
  nodes: string;
  allocatable: string;
  allocated: string;
  heartbeat: string;
  taints: string[];
  secret: string;
}

const resources = (l: Any | undefined) =>
  ["cpu", "memory", "pods"]
    .filter((k) => l?.[k] !== undefined)
    .map((k) => `${k} ${l![k]}`)
    .join(", ") || "—";

/** age formats the time since iso as "12s", "5m", "3h" or "2d" ("—" without one). */
export function age(iso: string | undefined, now: number): string {
  if (!iso) return "—";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

export function memberRow(mc: Any, now: number): MemberRow {
  const labels = mc.metadata?.labels ?? {};
  const st = mc.status ?? {};
  const cond = (st.conditions ?? []).find((c: Any) => c.type === "Ready");
  const ref = mc.spec?.secretRef;
  return {
    name: mc.metadata.name,
    endpoint: mc.spec?.apiEndpoint || "(from the Secret's kubeconfig)",
    zone: labels["topology.kubernetes.io/zone"] ?? "",
    region: labels["topology.kubernetes.io/region"] ?? "",
    ready: cond?.status ?? "Unknown",
    reason: cond?.reason ?? "",
    message: cond?.message ?? "",
    version: st.kubernetesVersion ?? "",
    nodes: st.nodes ? `${st.nodes.ready}/${st.nodes.total}` : "—",
    allocatable: resources(st.allocatable),
    allocated: resources(st.allocated),
    heartbeat: age(st.lastHeartbeatTime, now),
    taints: (mc.spec?.taints ?? []).map((t: Any) => `${t.key}${t.value ? "=" + t.value : ""}:${t.effect}`),
    secret: ref ? `${ref.namespace}/${ref.name}` : "",
  };
}

export interface Placement {
  cluster: string;
  /** replicas is undefined for kinds without replicas. */
  replicas?: number;
  applied: boolean;
  /** reason is the member's failure or conflict, if any. */
  reason: string;
  message: string;
  /** ready is the member's own status.readyReplicas, when it reports one. */
  ready?: number;
}

export interface PlacedResource {
  kind: string;
  apiVersion: string;
  namespace: string;
  name: string;
  binding: string;
  bindingNamespace: string;
  clusters: Placement[];
  /** conflict is the binding's Conflict=True message. */
  conflict: string;
}

export interface PolicyView {
  kind: "PropagationPolicy" | "ClusterPropagationPolicy";
  namespace: string;
  name: string;
  matched: string;
  matchedReason: string;
  matchedMessage: string;
  replicaScheduling: string;
  clusterNames: string[];
  resources: PlacedResource[];
}

function cond(o: Any, type: string): Any | undefined {
  return (o.status?.conditions ?? []).find((c: Any) => c.type === type);
}

export function placedResource(b: Any): PlacedResource {
  const res = b.spec?.resource ?? {};
  const members = new Map<string, Any>((b.status?.members ?? []).map((m: Any) => [m.cluster, m]));
  const clusters: Placement[] = (b.spec?.clusters ?? []).map((c: Any) => {
    const m = members.get(c.name);
    return {
      cluster: c.name,
      replicas: c.replicas,
      applied: !!m?.applied,
      reason: m?.reason ?? "",
      message: m?.message ?? "",
      ready: typeof m?.status?.readyReplicas === "number" ? m.status.readyReplicas : m?.status && c.replicas !== undefined ? 0 : undefined,
    };
  });
  // Members that still report a copy but left the placement.
  for (const [name, m] of members) {
    if (!clusters.some((c) => c.cluster === name)) clusters.push({ cluster: name, applied: !!m.applied, reason: m.reason ?? "", message: m.message ?? "" });
  }
  clusters.sort((a, b) => a.cluster.localeCompare(b.cluster));
  const conflict = cond(b, "Conflict");
  return {
    kind: res.kind ?? "",
    apiVersion: res.apiVersion ?? "",
    namespace: res.namespace ?? b.metadata.namespace ?? "",
    name: res.name ?? "",
    binding: b.metadata.name,
    bindingNamespace: b.metadata.namespace ?? "",
    clusters,
    conflict: conflict?.status === "True" ? conflict.message ?? conflict.reason ?? "conflict" : "",
  };
}

/** policyViews lists every policy with the resources its bindings place, sorted by kind, namespace and name. */
export function policyViews(policies: Any[], clusterPolicies: Any[], bindings: Any[]): PolicyView[] {
  const view = (p: Any, kind: PolicyView["kind"]): PolicyView => {
    const m = cond(p, "Matched");
    const rs = p.spec?.replicaScheduling;
    const ns = kind === "PropagationPolicy" ? p.metadata.namespace ?? "" : "";
    return {
      kind,
      namespace: ns,
      name: p.metadata.name,
      matched: m?.status ?? "Unknown",
      matchedReason: m?.reason ?? "",
      matchedMessage: m?.message ?? "",
      replicaScheduling: rs?.type ? rs.type + (rs.weightPreference?.dynamic ? ` (${rs.weightPreference.dynamic})` : rs.weightPreference?.staticWeights ? " (static weights)" : "") : "Duplicated",
      clusterNames: p.spec?.placement?.clusterNames ?? [],
      resources: bindings
        .filter((b) => {
          const ref = b.spec?.policy ?? {};
          return ref.kind === kind && ref.name === p.metadata.name && (kind === "ClusterPropagationPolicy" || (ref.namespace ?? b.metadata.namespace) === ns);
        })
        .map(placedResource)
        .sort((a, b) => `${a.namespace}/${a.kind}/${a.name}`.localeCompare(`${b.namespace}/${b.kind}/${b.name}`)),
    };
  };
  const out = [...policies.map((p) => view(p, "PropagationPolicy")), ...clusterPolicies.map((p) => view(p, "ClusterPropagationPolicy"))];
  return out.sort((a, b) => `${a.kind}/${a.namespace}/${a.name}`.localeCompare(`${b.kind}/${b.namespace}/${b.name}`));
}

/** resourcePath maps a binding's resource to the dashboard's group/version/resource (common kinds; others are lowercased plurals). */
export function resourcePath(apiVersion: string, kind: string): { group: string; version: string; resource: string } {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const lower = kind.toLowerCase();
  const plural = lower.endsWith("s") ? lower + "es" : lower.endsWith("y") ? lower.slice(0, -1) + "ies" : lower + "s";
  return { group, version, resource: plural };
}
