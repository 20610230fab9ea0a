import { describe, expect, it } from "vitest";
import { eventsQuery, ownedQueries, refTarget, relatedSections, selectorString, selects, sortEvents } from "./related";

describe("selectors", () => {
  it("renders matchLabels, matchExpressions and plain maps in upstream syntax", () => {
    expect(selectorString({ app: "web" })).toBe("app=web");
    expect(
      selectorString({
        matchLabels: { app: "web" },
        matchExpressions: [
          { key: "tier", operator: "In", values: ["a", "b"] },
          { key: "x", operator: "NotIn", values: ["c"] },
          { key: "y", operator: "Exists" },
          { key: "z", operator: "DoesNotExist" },
        ],
      }),
    ).toBe("app=web,tier in (a,b),x notin (c),y,!z");
    expect(selectorString({})).toBeNull();
    expect(selectorString(undefined)).toBeNull();
    expect(selectorString({ matchExpressions: [{ key: "a", operator: "Weird" }] })).toBeNull();
  });
  it("a Service selects pods carrying all its selector's labels; an empty selector selects none", () => {
    expect(selects({ app: "web" }, { app: "web", x: "y" })).toBe(true);
    expect(selects({ app: "web", tier: "fe" }, { app: "web" })).toBe(false);
    expect(selects({}, { app: "web" })).toBe(false);
  });
});

describe("queries", () => {
  const dep = { metadata: { namespace: "ns", name: "web", uid: "u1" }, spec: { selector: { matchLabels: { app: "web" } } } };
  it("events by involvedObject.uid, newest first, bounded", () => {
    expect(eventsQuery(dep)).toMatchObject({ resource: "events", namespace: "ns", filter: { fields: { "involvedObject.uid": "u1" } }, sort: { by: "lastTimestamp", desc: true }, page: { limit: 50 } });
    expect(eventsQuery({ kind: "Node", metadata: { name: "n1", uid: "x" } })).toMatchObject({ namespace: "", filter: { fields: { "involvedObject.kind": "Node", "involvedObject.name": "n1" } } });
    const es = [{ lastTimestamp: "2026-01-01T00:00:01Z" }, { eventTime: "2026-01-01T00:00:03Z" }, { lastTimestamp: "2026-01-01T00:00:02Z" }];
    expect(sortEvents(es)).toEqual([es[1], es[2], es[0]]);
  });
  it("owned objects by owner uid in the owner's namespace", () => {
    expect(ownedQueries("deployments", dep)).toEqual([{ group: "apps", version: "v1", resource: "replicasets", namespace: "ns", filter: { owner: "u1" }, page: { offset: 0, limit: 100 } }]);
    expect(ownedQueries("statefulsets", dep).map((q) => q.resource)).toEqual(["pods", "controllerrevisions", "persistentvolumeclaims"]);
    expect(ownedQueries("configmaps", dep)).toEqual([]);
  });
  it("related: a workload's pods, a Service's pods and slices, a pod's Services, a node's pods", () => {
    expect(relatedSections("deployments", dep)[0].query.filter).toEqual({ labels: "app=web" });
    const svc = { metadata: { namespace: "ns", name: "web" }, spec: { selector: { app: "web" } } };
    const s = relatedSections("services", svc);
    expect(s.map((x) => [x.id, x.query.resource, x.query.filter?.labels])).toEqual([
      ["service-pods", "pods", "app=web"],
      ["endpointslices", "endpointslices", "kubernetes.io/service-name=web"],
    ]);
    const p = relatedSections("pods", { metadata: { namespace: "ns", name: "p", labels: { app: "web" } } })[0];
    expect(p.query.resource).toBe("services");
    expect(p.keep!(svc)).toBe(true);
    expect(p.keep!({ spec: { selector: { app: "db" } } })).toBe(false);
    expect(relatedSections("nodes", { metadata: { name: "n1" } })[0].query).toMatchObject({ namespace: "", filter: { fields: { "spec.nodeName": "n1" } } });
  });
  it("resolves owner references through discovery, or by the usual plural", () => {
    const res = [{ group: "apps", version: "v1", resource: "replicasets", kind: "ReplicaSet", namespaced: true }];
    expect(refTarget({ apiVersion: "apps/v1", kind: "ReplicaSet" }, res)).toEqual({ group: "apps", version: "v1", resource: "replicasets", namespaced: true });
    expect(refTarget({ apiVersion: "v1", kind: "Node" }, [])).toEqual({ group: "", version: "v1", resource: "nodes", namespaced: false });
  });
});
