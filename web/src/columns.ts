// Table columns per kind, after kubectl's (upstream's printers); any
// other kind, CRDs included, gets name, namespace and age.
import type { Obj } from "./live";
import { claimStatus, classInfo, volumeStatus } from "./storage";

export interface Column {
  title: string;
  sort?: string; // backend sort field
  get: (o: Obj, now: number) => string;
}

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export function age(ts: string | undefined, now: number): string {
  if (!ts) return "";
  const s = Math.max(0, Math.floor((now - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function podStatus(p: Any): string {
  if (p.metadata?.deletionTimestamp) return "Terminating";
  const cs: Any[] = p.status?.containerStatuses ?? [];
  for (const c of cs) {
    const w = c.state?.waiting?.reason ?? c.state?.terminated?.reason;
    if (w && w !== "Completed") return w;
  }
  return p.status?.reason ?? p.status?.phase ?? "Unknown";
}

const name: Column = { title: "Name", sort: "name", get: (o) => o.metadata.name };
const namespace: Column = { title: "Namespace", sort: "namespace", get: (o) => o.metadata.namespace ?? "" };
const ageCol: Column = { title: "Age", sort: "age", get: (o, now) => age(o.metadata.creationTimestamp as string, now) };
const s = (o: Obj) => o as Any;

const byKind: Record<string, Column[]> = {
  pods: [
    {
      title: "Ready",
      get: (o) => {
        const cs: Any[] = s(o).status?.containerStatuses ?? [];
        const n = (s(o).spec?.containers ?? []).length;
        return `${cs.filter((c) => c.ready).length}/${n}`;
      },
    },
    { title: "Status", sort: "status.phase", get: (o) => podStatus(s(o)) },
    {
      title: "Restarts",
      get: (o) => String((s(o).status?.containerStatuses ?? []).reduce((a: number, c: Any) => a + (c.restartCount ?? 0), 0)),
    },
    { title: "Node", sort: "spec.nodeName", get: (o) => s(o).spec?.nodeName ?? "" },
  ],
  deployments: [
    { title: "Ready", get: (o) => `${s(o).status?.readyReplicas ?? 0}/${s(o).spec?.replicas ?? 0}` },
    { title: "Up-to-date", get: (o) => String(s(o).status?.updatedReplicas ?? 0) },
    { title: "Available", get: (o) => String(s(o).status?.availableReplicas ?? 0) },
  ],
  replicasets: [
    { title: "Desired", get: (o) => String(s(o).spec?.replicas ?? 0) },
    { title: "Current", get: (o) => String(s(o).status?.replicas ?? 0) },
    { title: "Ready", get: (o) => String(s(o).status?.readyReplicas ?? 0) },
  ],
  statefulsets: [{ title: "Ready", get: (o) => `${s(o).status?.readyReplicas ?? 0}/${s(o).spec?.replicas ?? 0}` }],
  daemonsets: [
    { title: "Desired", get: (o) => String(s(o).status?.desiredNumberScheduled ?? 0) },
    { title: "Ready", get: (o) => String(s(o).status?.numberReady ?? 0) },
  ],
  services: [
    { title: "Type", sort: "spec.type", get: (o) => s(o).spec?.type ?? "" },
    { title: "Cluster-IP", get: (o) => s(o).spec?.clusterIP ?? "" },
    {
      title: "Ports",
      get: (o) => (s(o).spec?.ports ?? []).map((p: Any) => `${p.port}${p.nodePort ? ":" + p.nodePort : ""}/${p.protocol ?? "TCP"}`).join(","),
    },
  ],
  nodes: [
    {
      title: "Status",
      get: (o) => {
        const r = (s(o).status?.conditions ?? []).find((c: Any) => c.type === "Ready");
        return (r?.status === "True" ? "Ready" : "NotReady") + (s(o).spec?.unschedulable ? ",SchedulingDisabled" : "");
      },
    },
    { title: "CPU", get: (o) => `${s(o).status?.allocatable?.cpu ?? "?"}/${s(o).status?.capacity?.cpu ?? "?"}` },
    { title: "Memory", get: (o) => s(o).status?.capacity?.memory ?? "" },
    { title: "Version", get: (o) => s(o).status?.nodeInfo?.kubeletVersion ?? "" },
  ],
  events: [
    { title: "Type", sort: "type", get: (o) => s(o).type ?? "" },
    { title: "Reason", sort: "reason", get: (o) => s(o).reason ?? "" },
    { title: "Object", get: (o) => `${s(o).involvedObject?.kind ?? ""}/${s(o).involvedObject?.name ?? ""}` },
    { title: "Message", get: (o) => s(o).message ?? "" },
  ],
  configmaps: [{ title: "Data", get: (o) => String(Object.keys(s(o).data ?? {}).length) }],
  // The backend caches only Secrets' metadata (no type, no data): a
  // Secret's content is read with the user's own token when it is opened.
  secrets: [],
  namespaces: [{ title: "Status", get: (o) => s(o).status?.phase ?? "" }],
  jobs: [{ title: "Completions", get: (o) => `${s(o).status?.succeeded ?? 0}/${s(o).spec?.completions ?? 1}` }],
  persistentvolumeclaims: [
    { title: "Status", sort: "status.phase", get: (o) => claimStatus(s(o)).phase },
    { title: "Volume", sort: "spec.volumeName", get: (o) => s(o).spec?.volumeName ?? "" },
    { title: "Capacity", get: (o) => s(o).status?.capacity?.storage ?? "" },
    { title: "Access modes", get: (o) => claimStatus(s(o)).accessModes },
    { title: "StorageClass", sort: "spec.storageClassName", get: (o) => claimStatus(s(o)).storageClass },
  ],
  persistentvolumes: [
    { title: "Capacity", get: (o) => s(o).spec?.capacity?.storage ?? "" },
    { title: "Access modes", get: (o) => volumeStatus(s(o)).accessModes },
    { title: "Reclaim policy", get: (o) => volumeStatus(s(o)).reclaimPolicy },
    { title: "Status", sort: "status.phase", get: (o) => volumeStatus(s(o)).phase },
    { title: "Claim", get: (o) => volumeStatus(s(o)).claim },
    { title: "StorageClass", sort: "spec.storageClassName", get: (o) => s(o).spec?.storageClassName ?? "" },
  ],
  storageclasses: [
    { title: "Default", get: (o) => (classInfo(s(o)).isDefault ? "yes" : "") },
    { title: "Provisioner", sort: "provisioner", get: (o) => classInfo(s(o)).provisioner },
    { title: "Reclaim policy", get: (o) => classInfo(s(o)).reclaimPolicy },
    { title: "Binding mode", get: (o) => classInfo(s(o)).bindingMode },
    { title: "Expansion", get: (o) => String(classInfo(s(o)).expansion) },
  ],
};

export function columnsFor(resource: string, namespaced: boolean, allNamespaces: boolean): Column[] {
  const cols = [name];
  if (namespaced && allNamespaces) cols.unshift(namespace);
  return [...cols, ...(byKind[resource] ?? []), ageCol];
}
