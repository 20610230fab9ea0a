// Rollout restart, history and undo as kubectl does them (pure; the
// calls are in Rollout.tsx).
//
// restart: kubectl rollout restart patches the pod template's
// kubectl.kubernetes.io/restartedAt annotation with the time (RFC 3339).
// history/undo: a Deployment's revisions are its ReplicaSets'
// deployment.kubernetes.io/revision annotations; undo copies the chosen
// ReplicaSet's pod template (without its pod-template-hash label) and its
// annotations into the Deployment. A StatefulSet's or DaemonSet's are its
// ControllerRevisions (revision, data = a patch holding spec.template).

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const restartedAtKey = "kubectl.kubernetes.io/restartedAt";
export const revisionKey = "deployment.kubernetes.io/revision";
export const rolloutKinds = ["deployments", "statefulsets", "daemonsets"];

/** rfc3339 is Go's time.RFC3339 of t in UTC (no fraction). */
export const rfc3339 = (t: Date) => t.toISOString().replace(/\.\d+Z$/, "Z");

/** restartPatch is kubectl rollout restart's merge patch. */
export function restartPatch(now: Date): Any {
  return { spec: { template: { metadata: { annotations: { [restartedAtKey]: rfc3339(now) } } } } };
}

export interface Revision {
  revision: number;
  /** the ReplicaSet or ControllerRevision holding it */
  name: string;
  images: string[];
  changeCause: string;
  created: string;
  /** the template the workload runs now */
  current: boolean;
  template: Any;
  annotations: Record<string, string>;
}

const images = (tpl: Any): string[] => (tpl?.spec?.containers ?? []).map((c: Any) => c.image);
const owned = (o: Any, uid: string) => (o.metadata?.ownerReferences ?? []).some((r: Any) => r.uid === uid);

/** deploymentHistory lists a Deployment's revisions from its ReplicaSets, newest first. */
export function deploymentHistory(deploy: Any, replicaSets: Any[]): Revision[] {
  const current = Number(deploy.metadata?.annotations?.[revisionKey] ?? 0);
  const out: Revision[] = [];
  for (const rs of replicaSets) {
    if (!owned(rs, deploy.metadata?.uid)) continue;
    const rev = Number(rs.metadata?.annotations?.[revisionKey]);
    if (!Number.isFinite(rev) || rev <= 0) continue;
    out.push({
      revision: rev,
      name: rs.metadata.name,
      images: images(rs.spec?.template),
      changeCause: rs.metadata?.annotations?.["kubernetes.io/change-cause"] ?? "",
      created: rs.metadata?.creationTimestamp ?? "",
      current: rev === current,
      template: rs.spec?.template ?? {},
      annotations: rs.metadata?.annotations ?? {},
    });
  }
  return out.sort((a, b) => b.revision - a.revision);
}

/** revisionHistory lists a StatefulSet's or DaemonSet's ControllerRevisions, newest first. */
export function revisionHistory(obj: Any, revisions: Any[]): Revision[] {
  const out: Revision[] = [];
  for (const cr of revisions) {
    if (!owned(cr, obj.metadata?.uid)) continue;
    const tpl = cr.data?.spec?.template ?? {};
    out.push({
      revision: Number(cr.revision ?? 0),
      name: cr.metadata.name,
      images: images(tpl),
      changeCause: cr.metadata?.annotations?.["kubernetes.io/change-cause"] ?? "",
      created: cr.metadata?.creationTimestamp ?? "",
      current: false,
      template: tpl,
      annotations: {},
    });
  }
  out.sort((a, b) => b.revision - a.revision);
  // A StatefulSet names its update revision; a DaemonSet's is the newest.
  const cur = obj.status?.updateRevision;
  for (const r of out) r.current = cur ? r.name === cur : r === out[0];
  return out;
}

/**
 * undoTarget picks the revision to roll back to: toRevision, or (0) the
 * one before the newest, as kubectl rollout undo. It throws kubectl's
 * messages when there is none.
 */
export function undoTarget(history: Revision[], toRevision = 0): Revision {
  if (toRevision > 0) {
    const r = history.find((h) => h.revision === toRevision);
    if (!r) throw new Error(`unable to find specified revision ${toRevision} in history`);
    return r;
  }
  if (history.length < 2) throw new Error("no rollout history found");
  return history[1]; // history is newest first
}

// Annotations kubectl does not copy from a ReplicaSet back into its
// Deployment on undo (they describe the ReplicaSet or the apply).
const skipAnnotations = new Set([
  "kubectl.kubernetes.io/last-applied-configuration",
  revisionKey,
  "deployment.kubernetes.io/revision-history",
  "deployment.kubernetes.io/desired-replicas",
  "deployment.kubernetes.io/max-replicas",
  "deprecated.deployment.rollback.to",
]);

/** stripHash is a ReplicaSet's pod template without its pod-template-hash label. */
export function stripHash(tpl: Any): Any {
  const t = structuredClone(tpl ?? {});
  if (t.metadata?.labels) {
    delete t.metadata.labels["pod-template-hash"];
  }
  return t;
}

const sameJSON = (a: unknown, b: unknown) => JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object")
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortKeys((v as Any)[k])]),
    );
  return v;
}

/**
 * undoPatch is the JSON patch rolling obj back to rev: the template
 * replaced (a Deployment: the ReplicaSet's without pod-template-hash, and
 * its annotations copied as kubectl does), guarded by a test of the
 * resourceVersion so a concurrent change is a conflict, not lost. It
 * throws when the template already matches (kubectl: "skipped rollback").
 */
export function undoPatch(resource: string, obj: Any, rev: Revision): Any[] {
  if (resource === "deployments" && obj.spec?.paused) throw new Error("you cannot rollback a paused deployment; resume it first");
  const tpl = resource === "deployments" ? stripHash(rev.template) : structuredClone(rev.template);
  delete tpl["$patch"];
  if (sameJSON(tpl, obj.spec?.template)) throw new Error(`skipped rollback (current template already matches revision ${rev.revision})`);
  const ops: Any[] = [
    { op: "test", path: "/metadata/resourceVersion", value: obj.metadata.resourceVersion },
    { op: "add", path: "/spec/template", value: tpl },
  ];
  if (resource === "deployments") {
    const ann: Record<string, string> = {};
    const cur: Record<string, string> = obj.metadata?.annotations ?? {};
    for (const k of Object.keys(cur)) if (skipAnnotations.has(k)) ann[k] = cur[k];
    for (const [k, v] of Object.entries(rev.annotations)) if (!skipAnnotations.has(k)) ann[k] = v as string;
    ops.push({ op: "add", path: "/metadata/annotations", value: ann });
  }
  return ops;
}
