import { describe, expect, it } from "vitest";
import { deploymentHistory, restartPatch, revisionHistory, stripHash, undoPatch, undoTarget } from "./rollout";

const rs = (name: string, rev: number, image: string, owner = "d-uid", extra: Record<string, string> = {}) => ({
  metadata: { name, uid: name, creationTimestamp: `2026-01-0${rev}T00:00:00Z`, ownerReferences: [{ uid: owner, kind: "Deployment", name: "web", controller: true }], annotations: { "deployment.kubernetes.io/revision": String(rev), ...extra } },
  spec: { template: { metadata: { labels: { app: "web", "pod-template-hash": name } }, spec: { containers: [{ name: "c", image }] } } },
});
const deploy = {
  metadata: { name: "web", uid: "d-uid", resourceVersion: "42", annotations: { "deployment.kubernetes.io/revision": "3", "kubectl.kubernetes.io/last-applied-configuration": "{}", note: "old" } },
  spec: { template: { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "c", image: "busybox:3" }] } } },
};

describe("restart", () => {
  it("patches the template's restartedAt with RFC 3339", () => {
    expect(restartPatch(new Date("2026-12-01T15:30:00.123Z"))).toEqual({ spec: { template: { metadata: { annotations: { "kubectl.kubernetes.io/restartedAt": "2026-12-01T15:30:00Z" } } } } });
  });
});

describe("deployment history and undo", () => {
  const hist = deploymentHistory(deploy, [rs("web-1", 1, "busybox:1"), rs("web-3", 3, "busybox:3"), rs("web-2", 2, "busybox:2", "d-uid", { note: "from-rs" }), rs("other", 5, "x", "other-uid")]);
  it("lists the owned ReplicaSets newest first, the current one marked", () => {
    expect(hist.map((h) => [h.revision, h.images[0], h.current])).toEqual([
      [3, "busybox:3", true],
      [2, "busybox:2", false],
      [1, "busybox:1", false],
    ]);
  });
  it("picks the previous revision, or the chosen one, with kubectl's errors", () => {
    expect(undoTarget(hist).revision).toBe(2);
    expect(undoTarget(hist, 1).revision).toBe(1);
    expect(() => undoTarget(hist, 9)).toThrow("unable to find specified revision 9 in history");
    expect(() => undoTarget(hist.slice(0, 1))).toThrow("no rollout history found");
  });
  it("copies the template without pod-template-hash and the ReplicaSet's annotations, guarded by the resourceVersion", () => {
    const ops = undoPatch("deployments", deploy, undoTarget(hist));
    expect(ops[0]).toEqual({ op: "test", path: "/metadata/resourceVersion", value: "42" });
    expect(ops[1].value).toEqual({ metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "c", image: "busybox:2" }] } });
    // The Deployment keeps its own revision and last-applied; others come from the ReplicaSet.
    expect(ops[2].value).toEqual({ "deployment.kubernetes.io/revision": "3", "kubectl.kubernetes.io/last-applied-configuration": "{}", note: "from-rs" });
    expect(hist[1].template.metadata.labels["pod-template-hash"]).toBe("web-2"); // not mutated
  });
  it("skips a rollback to the template it runs, and refuses a paused Deployment", () => {
    expect(() => undoPatch("deployments", deploy, hist[0])).toThrow("skipped rollback (current template already matches revision 3)");
    expect(() => undoPatch("deployments", { ...deploy, spec: { ...deploy.spec, paused: true } }, hist[1])).toThrow("paused");
  });
  it("strips only the hash label", () => {
    expect(stripHash({ metadata: { labels: { a: "b", "pod-template-hash": "x" } } })).toEqual({ metadata: { labels: { a: "b" } } });
  });
});

describe("controller revisions (StatefulSet, DaemonSet)", () => {
  const cr = (name: string, revision: number, image: string) => ({
    metadata: { name, ownerReferences: [{ uid: "s-uid" }] },
    revision,
    data: { spec: { template: { $patch: "replace", metadata: { labels: { app: "db" } }, spec: { containers: [{ name: "c", image }] } } } },
  });
  const sts = { metadata: { uid: "s-uid", resourceVersion: "7" }, spec: { template: { metadata: { labels: { app: "db" } }, spec: { containers: [{ name: "c", image: "db:2" }] } } }, status: { updateRevision: "db-b" } };
  const hist = revisionHistory(sts, [cr("db-a", 1, "db:1"), cr("db-b", 2, "db:2"), { metadata: { name: "x", ownerReferences: [{ uid: "no" }] }, revision: 9 }]);
  it("lists them newest first; the StatefulSet's update revision is current, a DaemonSet's the newest", () => {
    expect(hist.map((h) => [h.revision, h.name, h.current])).toEqual([
      [2, "db-b", true],
      [1, "db-a", false],
    ]);
    const ds = revisionHistory({ metadata: { uid: "s-uid" } }, [cr("db-a", 1, "db:1"), cr("db-b", 2, "db:2")]);
    expect(ds.map((h) => h.current)).toEqual([true, false]);
  });
  it("undo replaces the template with the revision's, without $patch and without annotations", () => {
    const ops = undoPatch("statefulsets", sts, undoTarget(hist));
    expect(ops).toEqual([
      { op: "test", path: "/metadata/resourceVersion", value: "7" },
      { op: "add", path: "/spec/template", value: { metadata: { labels: { app: "db" } }, spec: { containers: [{ name: "c", image: "db:1" }] } } },
    ]);
  });
});
