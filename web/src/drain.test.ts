import { describe, expect, it } from "vitest";
import { cordonPatch, drainDone, drainStatus, evictAll, planDrain, type Progress } from "./drain";

const pod = (name: string, owner?: string, extra: Record<string, unknown> = {}) => ({
  metadata: { namespace: "ns", name, ownerReferences: owner ? [{ kind: owner, name: `${name}-owner`, controller: true }] : [], ...extra },
  status: { phase: "Running" },
});

describe("plan", () => {
  const pods = [pod("web", "ReplicaSet"), pod("ds", "DaemonSet"), pod("mirror", undefined, { annotations: { "kubernetes.io/config.mirror": "abc" } }), pod("bare"), { ...pod("done"), status: { phase: "Succeeded" } }];
  it("evicts managed pods, skips DaemonSet and mirror pods, refuses bare ones unless forced", () => {
    expect(planDrain(pods).map((p) => [p.name, p.action])).toEqual([
      ["web", "evict"],
      ["ds", "skip"],
      ["mirror", "skip"],
      ["bare", "refuse"],
      ["done", "evict"],
    ]);
    expect(planDrain(pods, true).find((p) => p.name === "bare")?.action).toBe("evict");
  });
  it("cordons with spec.unschedulable", () => {
    expect(cordonPatch(true)).toEqual({ spec: { unschedulable: true } });
    expect(cordonPatch(false)).toEqual({ spec: { unschedulable: false } });
  });
});

describe("evictAll", () => {
  it("retries a PodDisruptionBudget's 429 until it passes, shows each step, and treats 404 as gone", async () => {
    let pdb = 2;
    const calls: string[] = [];
    const seen: Progress[] = [];
    const sleeps: number[] = [];
    const res = await evictAll(planDrain([pod("a", "ReplicaSet"), pod("b", "ReplicaSet"), pod("c", "DaemonSet"), pod("gone", "ReplicaSet")]), {
      evict: async (_ns, name) => {
        calls.push(name);
        if (name === "gone") throw { code: 404, message: "not found" };
        if (name === "b" && pdb-- > 0) throw { code: 429, message: "Cannot evict pod as it would violate the pod's disruption budget." };
      },
      onProgress: (_k, p) => seen.push(p),
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    expect(res.map((p) => [p.key, p.state, p.attempts])).toEqual([
      ["ns/a", "evicted", 1],
      ["ns/b", "evicted", 3],
      ["ns/c", "skipped", 0],
      ["ns/gone", "evicted", 1],
    ]);
    expect(calls.filter((c) => c === "b")).toHaveLength(3);
    expect(sleeps).toEqual([5000, 5000]);
    expect(seen.some((p) => p.key === "ns/b" && p.state === "blocked" && p.message.includes("disruption budget"))).toBe(true);
    expect(drainDone(res)).toBe(true);
  });
  it("stops on other errors, refuses bare pods, gives up after the timeout", async () => {
    let t = 0;
    const res = await evictAll(planDrain([pod("a", "ReplicaSet"), pod("bare"), pod("pdb", "ReplicaSet")]), {
      evict: async (_ns, name) => {
        if (name === "a") throw { code: 403, message: "forbidden" };
        throw { code: 429, message: "budget" };
      },
      onProgress: () => {},
      sleep: async (ms) => {
        t += ms;
      },
      now: () => t,
      timeoutMs: 12000,
    });
    expect(res.map((p) => [p.key, p.state])).toEqual([
      ["ns/a", "failed"],
      ["ns/bare", "failed"],
      ["ns/pdb", "failed"],
    ]);
    expect(res[0].message).toBe("forbidden");
    expect(res[2].message).toContain("gave up: budget");
    expect(drainDone(res)).toBe(false);
  });
  it("stops when aborted", async () => {
    const ac = new AbortController();
    const res = await evictAll(planDrain([pod("p", "ReplicaSet")]), {
      evict: async () => {
        ac.abort();
        throw { code: 429, message: "budget" };
      },
      onProgress: () => {},
      sleep: async () => {},
      signal: ac.signal,
    });
    expect(res[0]).toMatchObject({ state: "failed", message: "stopped" });
  });
});

describe("drainStatus", () => {
  const ps: Progress[] = [
    { key: "ns/a", state: "evicted", message: "", attempts: 1 },
    { key: "ns/ds", state: "skipped", message: "", attempts: 0 },
  ];
  it("waits for the evicted pods to be gone, as kubectl drain", () => {
    expect(drainStatus(ps, new Set(["ns/a", "ns/ds"]))).toEqual({ state: "terminating", text: "Evictions accepted; waiting for 1 pod(s) to terminate…" });
    expect(drainStatus(ps, new Set(["ns/ds"]))).toEqual({ state: "drained", text: "Drained: 1 pod(s) evicted, 1 skipped." });
  });
  it("is incomplete when a pod was not evicted", () => {
    expect(drainStatus([...ps, { key: "ns/b", state: "failed", message: "x", attempts: 1 }], new Set()).state).toBe("incomplete");
  });
});
