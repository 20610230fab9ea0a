import { describe, expect, it } from "vitest";
import { mergedLogsURL, NDJSONSplitter, podColor, prefix } from "./workloadlogs";

describe("merged workload logs", () => {
  it("splits NDJSON across chunk boundaries and counts broken lines", () => {
    const s = new NDJSONSplitter();
    expect(s.push('{"pod":"a","container":"c","line":"one"}\n{"pod":"b","con')).toEqual({ lines: [{ pod: "a", container: "c", line: "one" }], bad: 0 });
    expect(s.push('tainer":"c","line":"two"}\nnot json\n{"x":1}\n\n')).toEqual({ lines: [{ pod: "b", container: "c", line: "two" }], bad: 2 });
  });
  it("keeps the session's revoked line, pod or not", () => {
    const s = new NDJSONSplitter();
    expect(s.push('{"event":"revoked","message":"session ended: logged out; log in again"}\n')).toEqual({
      lines: [{ event: "revoked", message: "session ended: logged out; log in again" }],
      bad: 0,
    });
  });
  it("gives each pod a stable colour among 8", () => {
    expect(podColor("web-1")).toBe(podColor("web-1"));
    const cs = new Set(["web-a", "web-b", "web-c", "web-d", "web-e", "web-f"].map(podColor));
    expect(cs.size).toBeGreaterThan(1);
    for (const c of cs) expect(c >= 0 && c < 8).toBe(true);
  });
  it("prefixes with the pod, and the container when there are several", () => {
    expect(prefix({ pod: "p", container: "c" }, false)).toBe("p");
    expect(prefix({ pod: "p", container: "c" }, true)).toBe("p/c");
  });
  it("builds the stream URL", () => {
    const u = new URL("http://x" + mergedLogsURL({ group: "apps", version: "v1", resource: "deployments", namespace: "ns", name: "web" }, { tailLines: 50, timestamps: true }));
    expect(u.pathname).toBe("/api/workloadlogs");
    expect(Object.fromEntries(u.searchParams)).toEqual({ group: "apps", version: "v1", resource: "deployments", namespace: "ns", name: "web", tailLines: "50", timestamps: "1" });
  });
});
