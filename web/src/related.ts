// What an object's detail page shows around it (pure): its events, its
// owners and owned objects, and related objects (a Service's pods and
// EndpointSlices, the Services selecting a pod, a workload's pods, a
// node's pods). Every list is a live subscription filtered in the backend
// (label selector, field paths, owner uid), bounded by its page.

import type { Query } from "./live";

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/**
 * selectorString renders a selector in the backend's (upstream) label
 * selector syntax; a plain map (a Service's selector) is matchLabels.
 * null: the selector selects nothing (empty, or an unknown operator).
 */
export function selectorString(sel: LabelSelector | Record<string, string> | undefined): string | null {
  if (!sel) return null;
  const ls: LabelSelector = "matchLabels" in sel || "matchExpressions" in sel ? (sel as LabelSelector) : { matchLabels: sel as Record<string, string> };
  const parts = Object.entries(ls.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of ls.matchExpressions ?? []) {
    const vs = (e.values ?? []).join(",");
    if (e.operator === "In") parts.push(`${e.key} in (${vs})`);
    else if (e.operator === "NotIn") parts.push(`${e.key} notin (${vs})`);
    else if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
    else return null;
  }
  return parts.length ? parts.join(",") : null;
}

/** selects reports whether a Service's selector map picks labels. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  const s = Object.entries(selector ?? {});
  return s.length > 0 && s.every(([k, v]) => labels?.[k] === v);
}

export interface Section {
  id: string;
  title: string;
  query: Query;
  /** for client-side narrowing of a small, namespace-bounded list */
  keep?: (o: Any) => boolean;
}

const pods = (ns: string, extra: Partial<Query>): Query => ({ group: "", version: "v1", resource: "pods", namespace: ns, page: { offset: 0, limit: 100 }, ...extra });

/**
 * eventsQuery is the object's events, newest first: by involvedObject.uid,
 * except for a node: upstream's kubelet records node events with the
 * node's name as uid, so kind and name are matched, which covers both.
 */
export function eventsQuery(obj: Any): Query {
  const fields: Record<string, string> =
    obj.kind === "Node" ? { "involvedObject.kind": "Node", "involvedObject.name": obj.metadata?.name ?? "" } : { "involvedObject.uid": obj.metadata?.uid ?? "" };
  return {
    group: "",
    version: "v1",
    resource: "events",
    namespace: obj.metadata?.namespace ?? "",
    filter: { fields },
    sort: { by: "lastTimestamp", desc: true },
    page: { offset: 0, limit: 50 },
  };
}

/** eventTime is when an event last happened. */
export const eventTime = (e: Any): string => e.lastTimestamp || e.eventTime || e.series?.lastObservedTime || e.metadata?.creationTimestamp || "";

/** sortEvents orders events newest first (events.k8s.io ones have only eventTime). */
export const sortEvents = (es: Any[]): Any[] => [...es].sort((a, b) => (eventTime(b) > eventTime(a) ? 1 : eventTime(b) < eventTime(a) ? -1 : 0));

// The kinds an owner's dependents are usually of (ownerReferences point
// up only, so the page asks these kinds for the owner's uid).
const ownedKinds: Record<string, [string, string, string][]> = {
  deployments: [["apps", "v1", "replicasets"]],
  replicasets: [["", "v1", "pods"]],
  replicationcontrollers: [["", "v1", "pods"]],
  statefulsets: [
    ["", "v1", "pods"],
    ["apps", "v1", "controllerrevisions"],
    ["", "v1", "persistentvolumeclaims"],
  ],
  daemonsets: [
    ["", "v1", "pods"],
    ["apps", "v1", "controllerrevisions"],
  ],
  jobs: [["", "v1", "pods"]],
  cronjobs: [["batch", "v1", "jobs"]],
  services: [["discovery.k8s.io", "v1", "endpointslices"]],
  nodes: [["", "v1", "pods"]],
};

/** ownedQueries are the subscriptions finding obj's dependents by owner uid. */
export function ownedQueries(resource: string, obj: Any): Query[] {
  const uid = obj.metadata?.uid;
  if (!uid) return [];
  return (ownedKinds[resource] ?? []).map(([group, version, res]) => ({
    group,
    version,
    resource: res,
    namespace: obj.metadata?.namespace ?? "",
    filter: { owner: uid },
    page: { offset: 0, limit: 100 },
  }));
}

const workloads = ["deployments", "statefulsets", "daemonsets", "replicasets", "replicationcontrollers", "jobs"];

/** relatedSections are the related lists of an object's page. */
export function relatedSections(resource: string, obj: Any): Section[] {
  const ns = obj.metadata?.namespace ?? "";
  const out: Section[] = [];
  if (resource === "services") {
    const sel = selectorString(obj.spec?.selector);
    if (sel) out.push({ id: "service-pods", title: "Pods (selected)", query: pods(ns, { filter: { labels: sel } }) });
    out.push({
      id: "endpointslices",
      title: "EndpointSlices",
      query: { group: "discovery.k8s.io", version: "v1", resource: "endpointslices", namespace: ns, filter: { labels: `kubernetes.io/service-name=${obj.metadata.name}` }, page: { offset: 0, limit: 100 } },
    });
  }
  if (resource === "pods") {
    const labels = obj.metadata?.labels ?? {};
    out.push({
      id: "pod-services",
      title: "Services selecting this pod",
      // Services of one namespace are few; the page bounds them.
      query: { group: "", version: "v1", resource: "services", namespace: ns, page: { offset: 0, limit: 500 } },
      keep: (s) => selects(s.spec?.selector, labels),
    });
  }
  if (workloads.includes(resource)) {
    const sel = selectorString(obj.spec?.selector);
    if (sel) out.push({ id: "workload-pods", title: "Pods", query: pods(ns, { filter: { labels: sel } }) });
  }
  if (resource === "nodes") out.push({ id: "node-pods", title: "Pods on this node", query: pods("", { filter: { fields: { "spec.nodeName": obj.metadata.name } } }) });
  return out;
}

/** Kinds whose plural is not the lower-cased kind + "s". */
const plurals: Record<string, string> = { Endpoints: "endpoints", EndpointSlice: "endpointslices", Ingress: "ingresses", NetworkPolicy: "networkpolicies", StorageClass: "storageclasses", PodDisruptionBudget: "poddisruptionbudgets" };

export interface Res {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
}

/** refTarget resolves an ownerReference (apiVersion, kind) to a resource, through discovery when it knows it. */
export function refTarget(ref: { apiVersion: string; kind: string }, resources: Res[]): { group: string; version: string; resource: string; namespaced: boolean } {
  const [g, v] = ref.apiVersion.includes("/") ? ref.apiVersion.split("/") : ["", ref.apiVersion];
  const r = resources.find((x) => x.group === g && x.kind === ref.kind);
  if (r) return { group: g, version: v, resource: r.resource, namespaced: r.namespaced };
  const clusterKinds = ["Node", "Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "CustomResourceDefinition"];
  return { group: g, version: v, resource: plurals[ref.kind] ?? ref.kind.toLowerCase() + "s", namespaced: !clusterKinds.includes(ref.kind) };
}
