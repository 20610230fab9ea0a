import { describe, expect, it } from "vitest";
import {
  bars,
  bounds,
  fillBuckets,
  mergeNewer,
  parseState,
  requestParams,
  searchLink,
  splitHighlight,
  stateQuery,
  toCSV,
  toggleFilter,
  toNDJSON,
  type Hit,
  type SearchState,
} from "./logsearch";

describe("URL state", () => {
  it("round-trips every field", () => {
    const s: SearchState = {
      q: 'level:error AND "connection reset"',
      range: "custom",
      from: 1700000000000,
      to: 1700003600000,
      filters: [
        { field: "namespace", value: "team" },
        { field: "label.app.kubernetes.io/name", value: "web:v2" },
      ],
      tail: false,
    };
    expect(parseState(stateQuery(s))).toEqual(s);
    const live: SearchState = { q: "", range: "1h", filters: [], tail: true };
    expect(parseState("?" + stateQuery(live))).toEqual(live);
  });
  it("falls back on bad input", () => {
    expect(parseState("range=7y&f=novalue&f=:x&tail=1")).toEqual({ q: "", range: "15m", filters: [], tail: true });
    // A custom range without valid bounds is the default; a custom range never tails.
    expect(parseState("range=custom&from=5&to=1").range).toBe("15m");
    expect(parseState("range=custom&from=1&to=5&tail=1").tail).toBe(false);
  });
});

describe("request building", () => {
  it("sends the query, the bounds and every filter", () => {
    let s: SearchState = { q: " error ", range: "15m", filters: [], tail: false };
    s = toggleFilter(s, { field: "namespace", value: "team" });
    s = toggleFilter(s, { field: "pod", value: "web-1" });
    s = toggleFilter(s, { field: "pod", value: "web-2" });
    s = toggleFilter(s, { field: "pod", value: "web-1" }); // toggled off again
    const p = requestParams(s, 1_000_000_000, { histogram: "1" });
    expect(p.get("q")).toBe("error");
    expect(p.get("from")).toBe(String(1_000_000_000 - 15 * 60_000));
    expect(p.get("to")).toBe("1000000000");
    expect(p.getAll("f")).toEqual(["namespace:team", "pod:web-2"]);
    expect(p.get("histogram")).toBe("1");
  });
  it("omits an empty query and keeps custom bounds", () => {
    const p = requestParams({ q: "  ", range: "custom", from: 10, to: 20, filters: [], tail: false }, 99);
    expect(p.has("q")).toBe(false);
    expect(bounds({ q: "", range: "custom", from: 10, to: 20, filters: [], tail: false }, 99)).toEqual({ from: 10, to: 20 });
  });
});

describe("histogram", () => {
  it("fills empty buckets aligned to the interval and adds tail lines", () => {
    const b = fillBuckets([{ key: 60_000, count: 3 }], 60_000, 30_000, 200_000, [130_000, 179_999, 500_000]);
    expect(b).toEqual([
      { key: 0, count: 0 },
      { key: 60_000, count: 3 },
      { key: 120_000, count: 2 },
      { key: 180_000, count: 0 },
    ]);
  });
  it("scales bars to the tallest bucket", () => {
    const r = bars(
      [
        { key: 0, count: 0 },
        { key: 1, count: 5 },
        { key: 2, count: 10 },
      ],
      300,
      100,
    );
    expect(r.map((x) => x.h)).toEqual([0, 50, 100]);
    expect(r[2].y).toBe(0);
    expect(r[1].x).toBe(100);
    expect(r[1].w).toBe(99);
  });
});

describe("highlight", () => {
  it("splits marked words from plain text", () => {
    expect(splitHighlight("a \ue000error\ue001 in <b>\ue000db\ue001")).toEqual([
      { text: "a ", hit: false },
      { text: "error", hit: true },
      { text: " in <b>", hit: false },
      { text: "db", hit: true },
    ]);
    expect(splitHighlight("plain")).toEqual([{ text: "plain", hit: false }]);
  });
});

const hit = (id: string, ts: number, message: string): Hit => ({
  id,
  index: "logs-kubernetes-team",
  ts,
  source: { "@timestamp": new Date(ts).toISOString(), message, stream: "stdout", kubernetes: { namespace_name: "team", pod_name: "web-1", container_name: "app" } },
});

describe("tail and export", () => {
  it("merges newer lines in front without duplicates, bounded", () => {
    const list = [hit("b", 2, "x"), hit("a", 1, "x")];
    const out = mergeNewer(list, [hit("b", 2, "x"), hit("d", 4, "x"), hit("c", 3, "x")], 3);
    expect(out.map((h) => h.id)).toEqual(["d", "c", "b"]);
  });
  it("writes CSV with quoting and NDJSON", () => {
    const h = [hit("a", 0, 'say "hi", then\nbye')];
    expect(toCSV(h)).toBe('@timestamp,namespace,pod,container,host,stream,level,message\r\n1970-01-01T00:00:00.000Z,team,web-1,app,,stdout,,"say ""hi"", then\nbye"\r\n');
    expect(JSON.parse(toNDJSON(h).trim()).message).toBe('say "hi", then\nbye');
  });
});

describe("search links", () => {
  it("filters a pod by name and a workload by its selector", () => {
    expect(searchLink("pods", { metadata: { namespace: "team", name: "web-1" } })).toBe("#/logs?range=1h&f=namespace%3Ateam&f=pod%3Aweb-1");
    const dep = { metadata: { namespace: "team", name: "web" }, spec: { selector: { matchLabels: { tier: "fe", app: "web" } } } };
    expect(parseState(searchLink("deployments", dep)!.split("?")[1]).filters).toEqual([
      { field: "namespace", value: "team" },
      { field: "label.app", value: "web" },
      { field: "label.tier", value: "fe" },
    ]);
    expect(searchLink("services", dep)).toBeNull();
    expect(searchLink("jobs", { metadata: { namespace: "x" }, spec: { selector: {} } })).toBeNull();
  });
});
