import { describe, expect, it } from "vitest";
import { accessModes, claimStatus, claimUsers, classInfo, usageView, volumeStatus } from "./storage";

const pvc = (status: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  metadata: { name: "data", namespace: "team", ...extra },
  spec: { storageClassName: "local-path", accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } }, volumeName: status.phase === "Bound" ? "pv-1" : undefined },
  status,
});

describe("claimStatus", () => {
  it("a bound claim names its volume, capacity and modes", () => {
    const st = claimStatus(pvc({ phase: "Bound", capacity: { storage: "2Gi" }, accessModes: ["ReadWriteOnce", "ReadOnlyMany"] }));
    expect(st).toMatchObject({ phase: "Bound", volume: "pv-1", capacity: "2Gi", requested: "1Gi", accessModes: "RWO,ROX", storageClass: "local-path", volumeMode: "Filesystem", detail: "" });
  });
  it("a pending claim of a WaitForFirstConsumer class waits for a pod", () => {
    expect(claimStatus(pvc({ phase: "Pending" }), { volumeBindingMode: "WaitForFirstConsumer" }).detail).toMatch(/WaitForFirstConsumer/);
    expect(claimStatus(pvc({ phase: "Pending" }, { annotations: { "volume.kubernetes.io/selected-node": "n1" } })).detail).toBe("Provisioning on node n1.");
    expect(claimStatus(pvc({ phase: "Pending" })).detail).toMatch(/events/);
  });
  it("lost, terminating and resizing claims say so", () => {
    expect(claimStatus(pvc({ phase: "Lost" })).detail).toMatch(/no longer exists/);
    expect(claimStatus(pvc({ phase: "Bound" }, { deletionTimestamp: "2026-01-01T00:00:00Z" })).phase).toBe("Terminating");
    expect(claimStatus(pvc({ phase: "Bound", conditions: [{ type: "FileSystemResizePending", status: "True" }] })).detail).toMatch(/^Resizing: FileSystemResizePending/);
  });
  it("reads the class from the old annotation", () => {
    expect(claimStatus({ metadata: { name: "x", annotations: { "volume.beta.kubernetes.io/storage-class": "old" } }, spec: {} }).storageClass).toBe("old");
  });
});

describe("volumeStatus", () => {
  const pv = {
    metadata: { name: "pv-1" },
    spec: {
      capacity: { storage: "2Gi" },
      accessModes: ["ReadWriteOncePod"],
      persistentVolumeReclaimPolicy: "Delete",
      storageClassName: "local-path",
      claimRef: { namespace: "team", name: "data" },
      hostPath: { path: "/var/lib/skiff/storage/pv-1" },
      nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: ["n1"] }] }] } },
    },
    status: { phase: "Bound" },
  };
  it("a bound volume names its claim, policy, source and node", () => {
    expect(volumeStatus(pv)).toMatchObject({ phase: "Bound", claim: "team/data", reclaimPolicy: "Delete", capacity: "2Gi", accessModes: "RWOP", source: "hostPath /var/lib/skiff/storage/pv-1", node: "n1", detail: "" });
  });
  it("released and reserved volumes explain themselves", () => {
    expect(volumeStatus({ ...pv, spec: { ...pv.spec, persistentVolumeReclaimPolicy: "Retain" }, status: { phase: "Released" } }).detail).toMatch(/Retain/);
    expect(volumeStatus({ ...pv, status: { phase: "Available" } }).detail).toBe("Reserved for claim team/data.");
    expect(volumeStatus({ metadata: { name: "x" }, spec: {} })).toMatchObject({ phase: "Pending", claim: "", reclaimPolicy: "Retain", node: "" });
  });
});

describe("classInfo", () => {
  it("fills upstream's defaults and reads the default annotation", () => {
    expect(classInfo({ metadata: { name: "local-path", annotations: { "storageclass.kubernetes.io/is-default-class": "true" } }, provisioner: "skiff.io/local-path", volumeBindingMode: "WaitForFirstConsumer", allowVolumeExpansion: true })).toEqual({
      provisioner: "skiff.io/local-path",
      bindingMode: "WaitForFirstConsumer",
      isDefault: true,
      expansion: true,
      reclaimPolicy: "Delete",
      parameters: {},
    });
    expect(classInfo({ metadata: { name: "x" }, provisioner: "p" })).toMatchObject({ bindingMode: "Immediate", isDefault: false, expansion: false });
  });
});

describe("claimUsers and usage", () => {
  it("finds the pods mounting a claim, generic ephemeral volumes included", () => {
    const pods = [
      { metadata: { name: "b" }, spec: { volumes: [{ name: "v", persistentVolumeClaim: { claimName: "data" } }] } },
      { metadata: { name: "a" }, spec: { volumes: [{ name: "v", persistentVolumeClaim: { claimName: "data" } }] } },
      { metadata: { name: "c" }, spec: { volumes: [{ name: "v", persistentVolumeClaim: { claimName: "other" } }] } },
      { metadata: { name: "eph" }, spec: { volumes: [{ name: "scratch", ephemeral: {} }] } },
      { metadata: { name: "none" }, spec: {} },
    ];
    expect(claimUsers(pods, "data")).toEqual(["a", "b"]);
    expect(claimUsers(pods, "eph-scratch")).toEqual(["eph"]);
  });
  it("shows used/capacity, or says usage is unavailable (no made-up number)", () => {
    expect(usageView({ used: 256 << 20, capacity: 1 << 30, available: 0, pod: "team/p", time: 0, stale: false })).toEqual({ text: "256 MiB of 1.0 GiB used (25%)", fraction: 0.25, stale: false });
    expect(usageView(undefined)).toEqual({ text: "usage unavailable", stale: false });
    expect(usageView({ used: 1, capacity: 0, available: 0, pod: "", time: 0, stale: false }, "none yet").text).toBe("none yet");
    expect(usageView({ used: 512, capacity: 1024, available: 0, pod: "", time: 0, stale: true }).text).toMatch(/, stale$/);
  });
  it("abbreviates access modes", () => {
    expect(accessModes(["ReadWriteMany", "Other"])).toBe("RWX,Other");
    expect(accessModes(undefined)).toBe("");
  });
});
