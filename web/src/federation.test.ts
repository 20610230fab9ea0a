import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { age, memberRow, placedResource, policyViews } from "./federation";
import { MemberTable, PolicyPlacement } from "./Federation";
import { Live } from "./live";
import * as api from "./api";
import { FakeSocket } from "./fakesocket.test-util";

const now = Date.parse("2026-11-29T12:00:00Z");

const member = (name: string, ready: string, reason: string, extra: Record<string, unknown> = {}) => ({
  metadata: { name, labels: { "topology.kubernetes.io/zone": `zone-${name}`, "topology.kubernetes.io/region": "eu" } },
  spec: { apiEndpoint: `https://10.0.0.1:${name === "a" ? 6443 : 7443}`, secretRef: { namespace: "federation-system", name: `${name}-cred` }, taints: [{ key: "federation.skiff.io/not-ready", effect: "NoExecute" }] },
  status: {
    conditions: [{ type: "Ready", status: ready, reason, message: ready === "True" ? "" : "dial tcp: connection refused" }],
    kubernetesVersion: "v1.36.0",
    nodes: { total: 2, ready: 2 },
    allocatable: { cpu: "8", memory: "16Gi", pods: "220" },
    allocated: { cpu: "500m", pods: "3" },
    lastHeartbeatTime: "2026-11-29T11:59:48Z",
  },
  ...extra,
});

const binding = (name: string, policy: Record<string, string>, clusters: Array<[string, number]>, members: Array<Record<string, unknown>>) => ({
  metadata: { name: `${name}-deployment`, namespace: "fed" },
  spec: { resource: { apiVersion: "apps/v1", kind: "Deployment", namespace: "fed", name }, policy, clusters: clusters.map(([n, r]) => ({ name: n, replicas: r })) },
  status: { members },
});

describe("memberRow", () => {
  it("shows health with reason, endpoint, zone, version, capacity, heartbeat age and taints", () => {
    const r = memberRow(member("a", "False", "Unreachable"), now);
    expect(r).toMatchObject({
      name: "a",
      endpoint: "https://10.0.0.1:6443",
      zone: "zone-a",
      region: "eu",
      ready: "False",
      reason: "Unreachable",
      message: "dial tcp: connection refused",
      version: "v1.36.0",
      nodes: "2/2",
      allocatable: "cpu 8, memory 16Gi, pods 220",
      allocated: "cpu 500m, pods 3",
      heartbeat: "12s",
      taints: ["federation.skiff.io/not-ready:NoExecute"],
      secret: "federation-system/a-cred",
    });
  });
  it("a new member without status is Unknown", () => {
    const r = memberRow({ metadata: { name: "new" }, spec: {} }, now);
    expect(r).toMatchObject({ ready: "Unknown", version: "", nodes: "—", allocatable: "—", heartbeat: "—", taints: [] });
  });
  it("ages", () => {
    expect(age("2026-11-29T11:50:00Z", now)).toBe("10m");
    expect(age("2026-11-27T12:00:00Z", now)).toBe("2d");
  });
});

describe("policyViews", () => {
  const pp = { metadata: { name: "web", namespace: "fed" }, spec: { replicaScheduling: { type: "Divided", weightPreference: { dynamic: "AvailableReplicas" } }, placement: { clusterNames: ["a", "b"] } }, status: { conditions: [{ type: "Matched", status: "True", reason: "Matched" }] } };
  const other = { metadata: { name: "web", namespace: "other" }, spec: {}, status: { conditions: [{ type: "Matched", status: "False", reason: "NoMatch" }] } };
  const cpp = { metadata: { name: "all" }, spec: {}, status: {} };
  const b1 = binding("web", { kind: "PropagationPolicy", namespace: "fed", name: "web" }, [["b", 2], ["a", 3]], [
    { cluster: "a", applied: true, status: { readyReplicas: 3 } },
    { cluster: "b", applied: false, reason: "Unreachable", message: "member b is not ready" },
  ]);
  const b2 = binding("api", { kind: "ClusterPropagationPolicy", name: "all" }, [["a", 1]], [{ cluster: "a", applied: true, status: { readyReplicas: 1 } }]);

  it("groups bindings under their policy, namespaced policies by namespace", () => {
    const v = policyViews([pp, other], [cpp], [b1, b2]);
    expect(v.map((p) => `${p.kind}/${p.namespace}/${p.name}`)).toEqual(["ClusterPropagationPolicy//all", "PropagationPolicy/fed/web", "PropagationPolicy/other/web"]);
    expect(v[0].resources.map((r) => r.name)).toEqual(["api"]);
    expect(v[1].resources.map((r) => r.name)).toEqual(["web"]);
    expect(v[1].replicaScheduling).toBe("Divided (AvailableReplicas)");
    expect(v[2].resources).toEqual([]);
    expect(v[2]).toMatchObject({ matched: "False", matchedReason: "NoMatch" });
  });
  it("a cluster-scoped object's ClusterResourceBinding falls under its ClusterPropagationPolicy and links as such", () => {
    const crb = { metadata: { name: "reader-clusterrole" }, spec: { resource: { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", name: "reader" }, policy: { kind: "ClusterPropagationPolicy", name: "all" }, clusters: [{ name: "a" }] }, status: { members: [{ cluster: "a", applied: true }] } };
    const v = policyViews([], [cpp], [crb]);
    expect(v[0].resources).toMatchObject([{ kind: "ClusterRole", namespace: "", name: "reader", bindingNamespace: "", clusters: [{ cluster: "a", applied: true, replicas: undefined }] }]);
    const html = renderToStaticMarkup(createElement(PolicyPlacement, { p: v[0], resources: [] }));
    expect(html).toContain('href="#/o/federation.skiff.io/v1alpha1/clusterresourcebindings/_/reader-clusterrole"');
    expect(html).toContain('href="#/o/rbac.authorization.k8s.io/v1/clusterroles/_/reader"');
  });
  it("lists each member's replicas, readiness and failure, sorted", () => {
    const r = placedResource(b1);
    expect(r.clusters).toEqual([
      { cluster: "a", replicas: 3, applied: true, reason: "", message: "", ready: 3 },
      { cluster: "b", replicas: 2, applied: false, reason: "Unreachable", message: "member b is not ready", ready: undefined },
    ]);
  });
  it("renders placement chips with links to the resource, the policy and the binding", () => {
    const web = policyViews([pp], [], [b1])[0];
    const html = renderToStaticMarkup(createElement(PolicyPlacement, { p: web, resources: [{ group: "apps", version: "v1", resource: "deployments", kind: "Deployment", namespaced: true, verbs: [] }] }));
    expect(html).toContain('href="#/o/apps/v1/deployments/fed/web"');
    expect(html).toContain('href="#/o/federation.skiff.io/v1alpha1/propagationpolicies/fed/web"');
    expect(html).toContain('href="#/o/federation.skiff.io/v1alpha1/resourcebindings/fed/web-deployment"');
    expect(html).toContain("a: 3/3");
    expect(html).toContain("b: 2 (Unreachable)");
  });
});

describe("MemberTable", () => {
  it("renders health, reason and a switch button for members other than the current one", () => {
    const html = renderToStaticMarkup(
      createElement(MemberTable, { rows: [memberRow(member("a", "True", "Healthy"), now), memberRow(member("b", "False", "Unreachable"), now)], current: "a", onSwitch: () => undefined }),
    );
    expect(html).toMatch(/data-testid="health-a"[^>]*>Ready<small> Healthy/);
    expect(html).toMatch(/data-testid="health-b"[^>]*>NotReady<small> Unreachable/);
    expect(html).toContain("dial tcp: connection refused");
    expect(html).toContain('aria-label="switch to b"');
    expect(html).not.toContain('aria-label="switch to a"');
  });
  it("says when there are no members", () => {
    expect(renderToStaticMarkup(createElement(MemberTable, { rows: [], current: "" }))).toContain("No member clusters yet");
  });
});

describe("member context", () => {
  beforeEach(() => {
    FakeSocket.all = [];
    vi.stubGlobal("WebSocket", FakeSocket);
  });
  afterEach(() => vi.unstubAllGlobals());

  it("a member Live names the cluster in every subscription; the host's does not", () => {
    const host = new Live("ws://x/api/ws");
    const m1 = new Live("ws://x/api/ws", "m1");
    const [hs, ms] = FakeSocket.all;
    hs.open();
    ms.open();
    host.subscribe({ group: "", version: "v1", resource: "pods", namespace: "default" }, () => undefined);
    m1.subscribe({ group: "", version: "v1", resource: "pods", namespace: "default" }, () => undefined);
    m1.metrics({ kind: "cluster" }, () => undefined);
    expect(hs.sent[0]).not.toHaveProperty("cluster");
    expect(ms.sent[0]).toMatchObject({ type: "subscribe", resource: "pods", cluster: "m1" });
    expect(ms.sent[1]).toMatchObject({ type: "metrics", cluster: "m1" });
  });

  it("after a switch every request carries the member header; a refused switch keeps the host", async () => {
    const calls: Array<{ path: string; headers: Record<string, string> }> = [];
    let answer: { status: number; body: unknown } = { status: 200, body: { cluster: "m1", version: "v1.36.0" } };
    vi.stubGlobal("fetch", async (path: string, init: { headers: Record<string, string> }) => {
      calls.push({ path, headers: init.headers });
      return new Response(JSON.stringify(answer.body), { status: answer.status, headers: { "Content-Type": "application/json" } });
    });
    await api.switchCluster("m1");
    expect(api.currentCluster()).toBe("m1");
    answer = { status: 200, body: [] };
    await api.discovery();
    expect(calls[1].headers["X-Skiff-Cluster"]).toBe("m1");
    answer = { status: 403, body: { code: 403, message: "viewer cannot get secret federation-system/m2-cred" } };
    await expect(api.switchCluster("m2")).rejects.toThrow(/cannot get secret/);
    expect(api.currentCluster()).toBe("m1");
    expect(calls[2].headers).not.toHaveProperty("X-Skiff-Cluster");
    answer = { status: 200, body: { cluster: "" } };
    await api.switchCluster("");
    await api.discovery();
    expect(calls[4].headers).not.toHaveProperty("X-Skiff-Cluster");
  });
});
