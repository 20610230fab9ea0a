import { describe, expect, it } from "vitest";
import { columnsFor, age, podStatus } from "./columns";
import { parseRoute, objectHref, listHref } from "./route";
import { allowed } from "./api";

describe("columns", () => {
  it("adds Namespace only across namespaces", () => {
    expect(columnsFor("pods", true, true).map((c) => c.title)).toEqual(["Namespace", "Name", "Ready", "Status", "Restarts", "Node", "Age"]);
    expect(columnsFor("widgets", true, false).map((c) => c.title)).toEqual(["Name", "Age"]);
  });
  it("formats age like kubectl", () => {
    const now = Date.parse("2026-01-02T00:00:00Z");
    expect(age("2026-01-01T23:59:30Z", now)).toBe("30s");
    expect(age("2026-01-01T23:00:00Z", now)).toBe("60m");
    expect(age("2025-12-25T00:00:00Z", now)).toBe("8d");
  });
  it("derives pod status from container states", () => {
    expect(podStatus({ status: { phase: "Pending", containerStatuses: [{ state: { waiting: { reason: "ImagePullBackOff" } } }] } })).toBe("ImagePullBackOff");
    expect(podStatus({ metadata: { deletionTimestamp: "x" }, status: { phase: "Running" } })).toBe("Terminating");
  });
});

describe("routes", () => {
  it("round-trips deep links", () => {
    expect(parseRoute(objectHref("apps", "v1", "deployments", "team", "web", "yaml"))).toEqual({
      view: "object", group: "apps", version: "v1", resource: "deployments", ns: "team", name: "web", tab: "yaml",
    });
    expect(parseRoute(listHref("", "v1", "pods", "kube-system", "dns"))).toEqual({
      view: "list", group: "", version: "v1", resource: "pods", ns: "kube-system", q: "dns",
    });
    expect(parseRoute("#/nonsense").view).toBe("overview");
  });
});

describe("allowed", () => {
  it("reads SelfSubjectRulesReview rules", () => {
    const view = [{ verbs: ["get", "list", "watch"], apiGroups: ["apps"], resources: ["deployments", "deployments/scale"] }];
    expect(allowed(view, "get", "apps", "deployments")).toBe(true);
    expect(allowed(view, "delete", "apps", "deployments")).toBe(false);
    expect(allowed([{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }], "delete", "apps", "deployments")).toBe(true);
  });
});
