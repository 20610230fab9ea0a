import { describe, expect, it } from "vitest";
import { chartData, describe as describeChart, fmtBytes, fmtCores, metricsState, topN, type MetricsMsg, type Series } from "./metrics";
import { metricsQueryFor } from "./Extras";

const s = (name: string, t: number[], cpu: number[], memory = cpu.map((c) => c * 1e6)): Series => ({ name, t, cpu, memory });

describe("chartData", () => {
  it("aligns series on the union of their times, null where one has no point", () => {
    const d = chartData([s("pod", [0, 15, 30], [1, 2, 3]), s("c1", [15, 30], [0.5, 0.6])], "cpu", 15);
    expect(d).toEqual([
      [0, 15, 30],
      [1, 2, 3],
      [null, 0.5, 0.6],
    ]);
  });
  it("breaks the line where every series missed rounds (a stale node), never a zero", () => {
    const d = chartData([s("node", [0, 15, 75, 90], [1, 1, 2, 2])], "memory", 15);
    expect(d[0]).toEqual([0, 15, 30, 75, 90]);
    expect(d[1]).toEqual([1e6, 1e6, null, 2e6, 2e6]);
    expect(d[1]).not.toContain(0);
  });
  it("is empty without points", () => {
    expect(chartData([], "cpu")).toEqual([[]]);
    expect(chartData([s("p", [], [])], "cpu")).toEqual([[], []]);
  });
});

describe("metricsState", () => {
  const msg = (m: Partial<MetricsMsg>): MetricsMsg => ({ type: "metrics", id: "m1", available: true, series: [], ...m });
  it("tells loading, unavailable, forbidden, empty, stale and ok apart", () => {
    expect(metricsState(undefined)).toBe("loading");
    expect(metricsState(msg({ available: false, message: "metrics history unavailable" }))).toBe("unavailable");
    expect(metricsState(undefined, "viewer cannot get pods.metrics.k8s.io in namespace team")).toBe("forbidden");
    expect(metricsState(msg({ series: [s("p", [], [])] }))).toBe("empty");
    expect(metricsState(msg({ series: [s("n", [1], [1])], latest: { cpu: 1, memory: 1, time: 1, stale: true } }))).toBe("stale");
    expect(metricsState(msg({ series: [s("n", [1], [1])] }))).toBe("ok");
  });
});

describe("topN", () => {
  const pods = [
    { namespace: "a", name: "x", cpu: 0.1, memory: 300 },
    { namespace: "a", name: "y", cpu: 0.5, memory: 100 },
    { namespace: "b", name: "z", cpu: 0.5, memory: 200 },
  ];
  it("ranks by the field, biggest first, name breaking ties, at most n", () => {
    expect(topN(pods, "cpu", 2).map((p) => p.name)).toEqual(["y", "z"]);
    expect(topN(pods, "memory", 5).map((p) => p.name)).toEqual(["x", "z", "y"]);
    expect(topN(pods, "cpu", 0)).toEqual([]);
    expect(pods[0].name).toBe("x"); // the input is not reordered
  });
});

describe("units and text alternatives", () => {
  it("formats cores and bytes as kubectl top does", () => {
    expect(fmtCores(0.25)).toBe("250m");
    expect(fmtCores(12)).toBe("12.0 cores");
    expect(fmtCores(undefined)).toBe("—");
    expect(fmtBytes(100 * 1024 * 1024)).toBe("100 MiB");
    expect(fmtBytes(1536)).toBe("1.5 KiB");
    expect(fmtBytes(12)).toBe("12 B");
  });
  it("describes a chart for screen readers", () => {
    expect(describeChart("Pod p CPU", s("p", [0, 600], [0.1, 0.3]), "cpu")).toBe("Pod p CPU over the last 10 min: latest 300m, min 100m, max 300m");
    expect(describeChart("Pod p CPU", undefined, "cpu")).toBe("Pod p CPU: no data yet");
  });
});

describe("metricsQueryFor", () => {
  it("maps pages to feeds, a Deployment's ReplicaSet to its Deployment", () => {
    expect(metricsQueryFor("pods", "team", "web-1")?.query).toEqual({ kind: "pod", namespace: "team", name: "web-1" });
    expect(metricsQueryFor("nodes", "", "n1")?.query).toEqual({ kind: "node", name: "n1" });
    expect(metricsQueryFor("statefulsets", "team", "db")?.query).toEqual({ kind: "workload", namespace: "team", name: "StatefulSet/db" });
    const rs = { metadata: { labels: { "pod-template-hash": "7d9" }, ownerReferences: [{ kind: "Deployment", name: "web", controller: true }] } };
    expect(metricsQueryFor("replicasets", "team", "web-7d9", rs)?.query).toEqual({ kind: "workload", namespace: "team", name: "Deployment/web" });
    expect(metricsQueryFor("replicasets", "team", "solo", { metadata: {} })?.query.name).toBe("ReplicaSet/solo");
    expect(metricsQueryFor("configmaps", "team", "x")).toBeNull();
  });
});
