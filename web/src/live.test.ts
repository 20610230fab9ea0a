import { describe, expect, it } from "vitest";
import { View, type PageMsg, type Obj } from "./live";

const obj = (name: string, rv: string): Obj => ({ metadata: { name, namespace: "ns", resourceVersion: rv } });
const page = (p: Partial<PageMsg>): PageMsg => ({ type: "page", id: "s1", seq: 1, total: 0, offset: 0, order: [], upsert: [], remove: [], ...p });

describe("View", () => {
  it("applies upserts, removes and order, and reports what it knows for resume", () => {
    const v = new View();
    v.apply(page({ seq: 1, total: 2, order: ["ns/a", "ns/b"], upsert: [obj("a", "1"), obj("b", "2")] }));
    expect(v.list().map((o) => o.metadata.name)).toEqual(["a", "b"]);
    v.apply(page({ seq: 2, total: 2, order: ["ns/c", "ns/a"], upsert: [obj("c", "5")], remove: ["ns/b"] }));
    expect(v.list().map((o) => o.metadata.name)).toEqual(["c", "a"]);
    expect(v.known()).toEqual({ "ns/a": "1", "ns/c": "5" });
  });
  it("ignores an older page", () => {
    const v = new View();
    v.apply(page({ seq: 5, total: 1, order: ["ns/a"], upsert: [obj("a", "9")] }));
    expect(v.apply(page({ seq: 3, total: 0, order: [], remove: ["ns/a"] }))).toBe(false);
    expect(v.total).toBe(1);
  });
});
