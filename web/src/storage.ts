// PersistentVolumeClaims, PersistentVolumes and StorageClasses: binding
// status and usage derived from the objects (pure; storage.test.ts).
import type { VolumeUsage } from "./metrics";
import { fmtBytes } from "./metrics";

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const modeShort: Record<string, string> = { ReadWriteOnce: "RWO", ReadOnlyMany: "ROX", ReadWriteMany: "RWX", ReadWriteOncePod: "RWOP" };

/** accessModes abbreviates access modes as kubectl does (RWO, ROX, RWX, RWOP). */
export function accessModes(modes: string[] | undefined): string {
  return (modes ?? []).map((m) => modeShort[m] ?? m).join(",");
}

/** claimClass is a claim's StorageClass name ("" = none), the field or the old annotation. */
export function claimClass(pvc: Any): string {
  return pvc.spec?.storageClassName ?? pvc.metadata?.annotations?.["volume.beta.kubernetes.io/storage-class"] ?? "";
}

export interface ClaimStatus {
  phase: string;
  volume: string;
  capacity: string;
  requested: string;
  accessModes: string;
  storageClass: string;
  volumeMode: string;
  /** detail explains a phase that needs it (waiting for a consumer, lost volume, resizing). */
  detail: string;
}

/** claimStatus describes a claim's binding; cls is its StorageClass when known. */
export function claimStatus(pvc: Any, cls?: Any): ClaimStatus {
  const phase = pvc.metadata?.deletionTimestamp ? "Terminating" : (pvc.status?.phase ?? "Pending");
  let detail = "";
  const conds: Any[] = pvc.status?.conditions ?? [];
  const resizing = conds.find((c) => (c.type === "Resizing" || c.type === "FileSystemResizePending") && c.status === "True");
  if (phase === "Pending") {
    if (cls?.volumeBindingMode === "WaitForFirstConsumer" && !pvc.metadata?.annotations?.["volume.kubernetes.io/selected-node"])
      detail = "Waiting for a pod that uses it to be scheduled (WaitForFirstConsumer).";
    else if (pvc.metadata?.annotations?.["volume.kubernetes.io/selected-node"])
      detail = `Provisioning on node ${pvc.metadata.annotations["volume.kubernetes.io/selected-node"]}.`;
    else detail = "Not bound yet: see the events for why.";
  } else if (phase === "Lost") detail = `Its volume ${pvc.spec?.volumeName ?? ""} no longer exists; the data is gone or must be restored.`;
  else if (resizing) detail = `Resizing: ${resizing.type}${resizing.message ? ` (${resizing.message})` : ""}.`;
  return {
    phase,
    volume: pvc.spec?.volumeName ?? "",
    capacity: pvc.status?.capacity?.storage ?? "",
    requested: pvc.spec?.resources?.requests?.storage ?? "",
    accessModes: accessModes(pvc.status?.accessModes ?? pvc.spec?.accessModes),
    storageClass: claimClass(pvc),
    volumeMode: pvc.spec?.volumeMode ?? "Filesystem",
    detail,
  };
}

export interface VolumeStatus {
  phase: string;
  /** claim is "<ns>/<name>" of the claim it is bound or reserved to ("" = none). */
  claim: string;
  reclaimPolicy: string;
  capacity: string;
  accessModes: string;
  storageClass: string;
  source: string;
  /** node is the node the volume is pinned to by node affinity ("" = any). */
  node: string;
  detail: string;
}

const sources = ["hostPath", "local", "csi", "nfs", "iscsi", "fc", "cephfs", "rbd"];

/** volumeStatus describes a volume's binding. */
export function volumeStatus(pv: Any): VolumeStatus {
  const phase = pv.metadata?.deletionTimestamp ? "Terminating" : (pv.status?.phase ?? "Pending");
  const ref = pv.spec?.claimRef;
  const terms: Any[] = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
  const hostExpr = terms.flatMap((t) => t.matchExpressions ?? []).find((e: Any) => e.key === "kubernetes.io/hostname" && e.operator === "In");
  const src = sources.find((k) => pv.spec?.[k]) ?? "";
  let detail = pv.status?.message ?? "";
  if (!detail && phase === "Released")
    detail =
      pv.spec?.persistentVolumeReclaimPolicy === "Retain"
        ? "Its claim was deleted; the data is kept (Retain). Clear claimRef to reuse it."
        : "Its claim was deleted; the volume is being reclaimed.";
  if (!detail && phase === "Available" && ref) detail = `Reserved for claim ${ref.namespace}/${ref.name}.`;
  return {
    phase,
    claim: ref ? `${ref.namespace}/${ref.name}` : "",
    reclaimPolicy: pv.spec?.persistentVolumeReclaimPolicy ?? "Retain",
    capacity: pv.spec?.capacity?.storage ?? "",
    accessModes: accessModes(pv.spec?.accessModes),
    storageClass: pv.spec?.storageClassName ?? "",
    source: src === "hostPath" ? `hostPath ${pv.spec.hostPath.path}` : src === "local" ? `local ${pv.spec.local.path}` : src === "csi" ? `csi ${pv.spec.csi.driver}` : src,
    node: hostExpr?.values?.join(",") ?? "",
    detail,
  };
}

export interface ClassInfo {
  provisioner: string;
  bindingMode: string;
  isDefault: boolean;
  expansion: boolean;
  reclaimPolicy: string;
  parameters: Record<string, string>;
}

/** classInfo describes a StorageClass with upstream's defaults filled in. */
export function classInfo(sc: Any): ClassInfo {
  const ann = sc.metadata?.annotations ?? {};
  return {
    provisioner: sc.provisioner ?? "",
    bindingMode: sc.volumeBindingMode ?? "Immediate",
    isDefault: ann["storageclass.kubernetes.io/is-default-class"] === "true" || ann["storageclass.beta.kubernetes.io/is-default-class"] === "true",
    expansion: sc.allowVolumeExpansion === true,
    reclaimPolicy: sc.reclaimPolicy ?? "Delete",
    parameters: sc.parameters ?? {},
  };
}

/** claimUsers returns the names of the pods that mount claim (directly or as a generic ephemeral volume). */
export function claimUsers(pods: Any[], claim: string): string[] {
  return pods
    .filter((p) =>
      (p.spec?.volumes ?? []).some(
        (v: Any) => v.persistentVolumeClaim?.claimName === claim || (v.ephemeral && `${p.metadata.name}-${v.name}` === claim),
      ),
    )
    .map((p) => p.metadata.name as string)
    .sort();
}

export interface UsageView {
  text: string;
  /** fraction used, 0..1 (undefined when unknown) */
  fraction?: number;
  stale: boolean;
}

/** usageView describes a claim's usage, or says it is unavailable (never a made-up number). */
export function usageView(u: VolumeUsage | undefined, reason = "usage unavailable"): UsageView {
  if (!u || !(u.capacity > 0)) return { text: reason, stale: false };
  const f = u.used / u.capacity;
  return { text: `${fmtBytes(u.used)} of ${fmtBytes(u.capacity)} used (${Math.round(f * 100)}%)${u.stale ? ", stale" : ""}`, fraction: f, stale: u.stale };
}
